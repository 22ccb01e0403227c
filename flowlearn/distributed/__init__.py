"""Data-parallel training on existing engines: :class:`MPIStrategy` runs one training over MPI ranks.

mpi4py is imported only when a strategy is made (``import flowlearn`` never loads MPI). See
docs/scale-out.md ("MPI data-parallel training").
"""
from .launch import launched_ranks
from .mpi_strategy import MPIStrategy
from .sharding import shard_batch, shard_bounds

__all__ = ["MPIStrategy", "launched_ranks", "shard_batch", "shard_bounds"]
