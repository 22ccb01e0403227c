"""MPIStrategy: synchronous data-parallel training over MPI ranks, gradients averaged by one allreduce a step."""
import zlib

import numpy

from ..core import backend
from ..core.tensor import Tensor
from ._mpi import import_mpi
from .nccl import NcclAllreduce
from .sharding import shard_batch, shard_bounds

__all__ = ["MPIStrategy"]


class MPIStrategy:
    """Train one model on N processes (MPI ranks): each takes its shard of every batch, gradients are averaged.

    Pass it as ``strategy=`` to :meth:`Sequential.fit <flowlearn.Sequential.fit>` or to a scikit-learn
    estimator (``DNNClassifier(strategy=...)``), or as ``RunConfig(train_distribute=...)`` to an
    :class:`~flowlearn.estimators.Estimator`, and start the script with ``mpirun -np N python script.py``.
    Every rank runs the same script on the same data; the training loop then

    * starts every rank from rank 0's weights (broadcast before the first step) and, for arrays, from
      rank 0's shuffling stream, so that all ranks cut the same global batches;
    * gives rank ``r`` the ``r``-th contiguous slice of each global batch (sizes differ by at most one);
    * before every optimizer update, replaces each rank's gradients with their average over the ranks,
      weighted by each shard's share of the batch's loss weight (its rows, or its sample weights where the
      loss is normalised by them), in one ``Allreduce`` of one flat buffer. N ranks with global batch
      ``B`` therefore take the same steps as one process with batch ``B``, to float rounding;
    * reports the loss and metrics of the whole global batch on every rank;
    * writes checkpoints, TensorBoard events, CSV logs and progress bars on rank 0 only (callbacks with
      ``chief_only = True``), and ends with a barrier, so that rank 0's files exist when ``fit`` or
      ``train`` returns on any rank.

    Batch normalization normalises each shard with its own statistics and dropout draws each rank's
    masks independently: models using them train correctly but not bit-for-bit as one process would.
    Evaluation, prediction and validation run in full on every rank (they need no communication).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator whose ranks train together; default ``MPI.COMM_WORLD``.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.
    is_chief : bool
        True on rank 0, the rank that writes files.

    Raises
    ------
    ImportError
        When mpi4py (the ``mpi`` extra) or the system's MPI library is missing.

    Examples
    --------
    Saved as ``train.py`` and run with ``mpirun -np 2 python train.py``::

        strategy = fl.distributed.MPIStrategy()
        model.fit(x, y, batch_size=64, epochs=5, strategy=strategy)   # 32 rows per rank per step
        if strategy.is_chief:
            model.save("model.flmodel")
    """

    def __init__(self, comm=None):
        self._mpi = import_mpi("MPIStrategy")
        if comm is None:
            comm = self._mpi.COMM_WORLD
        if not hasattr(comm, "Allreduce"):
            raise TypeError(f"MPIStrategy: expected an mpi4py communicator as `comm`; got {type(comm).__name__}.")
        self.comm = comm
        self._fraction = 1.0  # this rank's share of the current global batch's loss weight
        self._global_rows = None  # rows in the current global batch
        self._checked = False  # whether this run's first batch was compared across the ranks
        self._nccl = NcclAllreduce(comm)

    @property
    def rank(self):
        """This process's rank in ``comm`` (0 is the chief)."""
        return self.comm.Get_rank()

    @property
    def size(self):
        """The number of ranks in ``comm``."""
        return self.comm.Get_size()

    @property
    def is_chief(self):
        """True on rank 0, the one that writes checkpoints, summaries and exports."""
        return self.comm.Get_rank() == 0

    def __repr__(self):
        return f"MPIStrategy(rank={self.rank}, size={self.size})"

    # A strategy stands for this process's place among the running ranks: copies (scikit-learn's clone,
    # GridSearchCV) share it, as they would share a communicator, rather than make another group.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # -- what the training loop calls ---------------------------------------------------------------
    def shard(self, batch, rows, weight):
        """This rank's slice of the global ``batch`` of ``rows`` rows; remembers its share of the loss weight.

        ``weight(batch)`` is what the training loss of a batch is normalised by (its rows, or the sum of
        its sample weights): rank r's gradient enters the average with weight(its shard) / weight(batch).
        Every rank holds the whole global batch, so the shares need no communication.
        """
        if not self._checked:
            self._check_same_batch(batch, rows)
        start, stop = shard_bounds(rows, self.size, self.rank)
        local = shard_batch(batch, rows, start, stop)
        total = float(weight(batch))
        self._fraction = float(weight(local)) / total if stop > start and total > 0 else 0.0
        self._global_rows = rows
        return local

    @property
    def global_rows(self):
        """The rows of the global batch being trained on (every rank's shard together)."""
        return self._global_rows

    def global_mean(self, value):
        """The loss of the global batch from this rank's loss ``value`` on its shard (a float, on every rank).

        A shard's loss is its mean; the global mean is the shards' means weighted by their shares. An empty
        shard contributes nothing, not its NaN mean of no rows.
        """
        part = numpy.array([value * self._fraction if self._fraction > 0 else 0.0], dtype=numpy.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, part, op=self._mpi.SUM)
        return float(part[0])

    def reduce_gradients(self, params):
        """Replace the ``.grad`` of every parameter with the weighted average over the ranks, in place.

        Called by :meth:`Optimizer.step <flowlearn.core.optimizers.Optimizer.step>` before each update,
        on every rank with the same parameters in the same order. A parameter whose gradient is None on
        every rank keeps None (so the optimizer skips it, as one process would); a rank with no rows in
        this batch contributes zeros.
        """
        if not params:
            return
        first = params[0].data
        xp = backend.array_module(first)
        dtype = numpy.result_type(*[param.data.dtype for param in params])
        sizes = [param.data.size for param in params]
        total = sum(sizes)
        # All gradients go into one contiguous buffer and one Allreduce, rather than one call per
        # parameter: each collective pays the network's latency once and MPI's reduction algorithms
        # only reach full bandwidth on large messages, so a dozen small calls a step would be bound by
        # latency (the bucketing of Horovod's tensor fusion and PyTorch DDP). The last len(params)
        # entries count the ranks that had a gradient for each parameter.
        buffer = xp.empty(total + len(params), dtype=dtype)
        offset = 0
        for index, (param, size) in enumerate(zip(params, sizes)):
            grad = param.grad
            part = buffer[offset:offset + size]
            if grad is None or self._fraction == 0.0:
                part[...] = 0
                buffer[total + index] = 0
            else:
                part[...] = (grad.data if isinstance(grad, Tensor) else grad).reshape(-1)
                part *= self._fraction
                buffer[total + index] = 1
            offset += size
        self._allreduce_sum(buffer)
        present = backend.to_numpy(buffer[total:])
        offset = 0
        for param, size, count in zip(params, sizes, present):
            data = param.data
            param.grad = buffer[offset:offset + size].reshape(data.shape).astype(data.dtype, copy=False) \
                if count > 0 else None
            offset += size

    def _allreduce_sum(self, buffer):
        """Sum ``buffer`` over the ranks in place: with NCCL for cupy arrays where cupy has it, else on the host."""
        if backend.array_module(buffer) is numpy:
            self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
            return
        if NcclAllreduce.supports(buffer):
            self._nccl(buffer)
            return
        host = backend.to_numpy(buffer)
        self.comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        buffer[...] = backend.array_module(buffer).asarray(host)

    def gather_rows(self, array):
        """Every rank's rows of ``array`` (a shard's labels or predictions) joined in rank order: the
        global batch's rows, on every rank. None stays None."""
        if array is None:
            return None
        if isinstance(array, Tensor):
            array = array.data
        parts = self.comm.allgather(backend.to_numpy(array))
        return numpy.concatenate(parts, axis=0)

    def broadcast_variables(self, variables):
        """Overwrite ``variables`` (Tensors, the same list on every rank) with rank 0's values, in place."""
        self._checked = False  # a new run: its first batch gets compared
        variables = list(variables)
        layout = [(tuple(v.shape), str(v.dtype)) for v in variables]
        expected = self.comm.bcast(layout, root=0)
        if layout != expected:
            raise ValueError(
                f"MPIStrategy: the model on rank {self.rank} has variables {_describe(layout)}, rank 0's has "
                f"{_describe(expected)}; every rank must build the same model (run the same script on the same "
                "data)."
            )
        for variable in variables:
            host = numpy.array(backend.to_numpy(variable.data), order="C")  # a contiguous copy (0-d stays 0-d)
            self.comm.Bcast(host, root=0)
            if not self.is_chief:
                variable.assign(host)

    def _check_same_batch(self, batch, rows):
        """Refuse, on every rank at once, a first batch that differs between the ranks (its rows, a checksum
        of its first rows): ranks fed different data would train on a mix no single process would see."""
        self._checked = True
        fingerprint = (rows, _checksum(batch))
        seen = self.comm.allgather(fingerprint)
        if any(other != seen[0] for other in seen):
            raise ValueError(
                f"MPIStrategy: the ranks got different first batches (rows and checksum per rank: {seen}); every "
                "rank must pass the same data in the same order. Seed the shuffling of an input_fn or generator "
                "(numpy_input_fn(..., seed=0)), or build the data the same way on every rank."
            )

    def broadcast_generators(self, generators):
        """Give numpy Generators (the same list on every rank) rank 0's state, so all ranks draw alike."""
        generators = [g for g in generators if g is not None]
        states = self.comm.bcast([g.bit_generator.state for g in generators], root=0)
        if not self.is_chief:
            for generator, state in zip(generators, states):
                generator.bit_generator.state = state

    def barrier(self):
        """Wait until every rank gets here."""
        self.comm.Barrier()


def _checksum(batch, rows=4):
    """CRC-32 of the first ``rows`` rows of the batch's first array (None where it has none or is not numeric)."""
    while isinstance(batch, (tuple, list, dict)):
        items = [item for item in (batch.values() if isinstance(batch, dict) else batch) if item is not None]
        if not items:
            return None
        batch = items[0]
    if isinstance(batch, Tensor):
        batch = batch.data
    host = numpy.asarray(backend.to_numpy(batch[:rows])) if hasattr(batch, "shape") else None
    if host is None or host.dtype.kind not in "biuf":
        return None
    return zlib.crc32(numpy.ascontiguousarray(host).tobytes())


def _describe(layout):
    if len(layout) > 6:
        return f"{len(layout)} variables ({layout[:3]} ...)"
    return str(layout)
