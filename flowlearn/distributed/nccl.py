"""Allreduce of cupy arrays on the GPUs, through NCCL (``cupy.cuda.nccl``), set up over MPI."""
import functools

import numpy

_DTYPES = {numpy.dtype(numpy.float32): "NCCL_FLOAT32", numpy.dtype(numpy.float64): "NCCL_FLOAT64",
           numpy.dtype(numpy.float16): "NCCL_FLOAT16"}


@functools.cache  # asked on every gradient allreduce; a failed import would search the path each time
def nccl_module():
    """``cupy.cuda.nccl`` when cupy was built with NCCL, else None."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


class NcclAllreduce:
    """Sums a cupy array over every rank of an MPI communicator, in place, with NCCL.

    The NCCL communicator is made on first use: rank 0 draws NCCL's unique id and MPI broadcasts it
    (NCCL needs some other channel to meet; MPI is already there). Each rank uses its current device.
    """

    def __init__(self, comm):
        self.comm = comm
        self._nccl = None

    def __call__(self, buffer):
        import cupy

        nccl = nccl_module()
        if self._nccl is None:
            uid = nccl.get_unique_id() if self.comm.Get_rank() == 0 else None
            uid = self.comm.bcast(uid, root=0)
            self._nccl = nccl.NcclCommunicator(self.comm.Get_size(), uid, self.comm.Get_rank())
        stream = cupy.cuda.get_current_stream()
        dtype = getattr(nccl, _DTYPES[buffer.dtype])
        self._nccl.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, dtype, nccl.NCCL_SUM, stream.ptr)
        stream.synchronize()  # the optimizer reads the sums next, perhaps on another stream
        return buffer

    @staticmethod
    def supports(buffer):
        """True for a cupy array of a dtype NCCL sums, where cupy has NCCL."""
        return buffer.dtype in _DTYPES and nccl_module() is not None
