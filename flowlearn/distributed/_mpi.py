"""Importing mpi4py lazily, with an error that says what to install."""

INSTALL_HINT = (
    "pip install 'flowlearn[mpi]' (mpi4py) and an MPI library from the system's packages (Debian/Ubuntu: "
    "apt-get install openmpi-bin libopenmpi-dev), then launch with mpirun -np N python ..."
)


def import_mpi(owner):
    """``mpi4py.MPI``, or ImportError naming the ``mpi`` extra.

    mpi4py is imported here, when a strategy is made, and never by ``import flowlearn``: MPI
    initialises itself on import, which a single-process user must not pay for (or fail on).
    """
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"{owner} needs mpi4py, which is not installed ({error}). {INSTALL_HINT}") from None
    except RuntimeError as error:  # mpi4py is there but cannot load libmpi ("cannot load MPI library")
        raise ImportError(f"{owner}: mpi4py cannot load an MPI library ({error}). {INSTALL_HINT}") from None
    return MPI
