"""Whether this process was started by an MPI launcher (mpirun, mpiexec, srun) as one of several ranks."""
import os

__all__ = ["launched_ranks"]

# Set by the launchers for every rank: Open MPI, MPICH/Hydra and Intel MPI (PMI), Slurm's PMIx.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_ranks(environ=None):
    """The number of ranks the launcher started (1 when the process was not started by one).

    Read from the environment, without importing MPI, so that a plain ``flowlearn train`` never
    loads an MPI library.

    >>> launched_ranks({"OMPI_COMM_WORLD_SIZE": "4"}), launched_ranks({})
    (4, 1)
    """
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1
