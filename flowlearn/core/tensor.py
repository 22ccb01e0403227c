"""The Tensor: an array on a device plus what reverse-mode autodiff needs to know about it."""
import numpy

from . import autodiff, backend
from .config import floatx, modes


def _default_dtype(array, dtype, xp):
    if dtype is not None:
        return array.astype(numpy.dtype(dtype), copy=False)
    if array.dtype.kind == "f" and array.dtype != floatx():
        return array.astype(floatx())
    return array


def _is_view_of(array, other):
    """True when ``array`` is ``other`` or a view of the memory ``other`` owns or views.

    An identity test on ``.base`` (numpy and cupy point a view's base at the owner of the memory),
    cheap enough for every op; arrays that merely overlap otherwise are not detected.
    """
    if array is other:
        return True
    base = array.base
    return base is not None and (base is other or base is other.base)


def _note_read(tensor, how):
    # fl.trace records primitives only: its tape warns when a traced value leaves as Python data.
    tape = modes.tape
    if tape is not None:
        tape.note_frozen(tensor, how)


class Tensor:
    """An n-dimensional array (numpy on "cpu", cupy on "gpu") that can record how it was computed.

    Create tensors with :func:`flowlearn.tensor`. Arithmetic, indexing and the methods below run
    primitives; when an input has ``requires_grad=True`` the result remembers its node, and
    ``backward()`` fills ``.grad`` of every leaf that requires it.

    >>> import flowlearn as fl
    >>> w = fl.tensor([1.0, 2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> w.grad
    array([2., 4.], dtype=float32)
    """

    # _counter: a one-element list, the version of ``data``: bumped by every in-place write made
    # through flowlearn and shared with tensors that view the same memory (see ``_version``).
    __slots__ = ("data", "requires_grad", "grad", "_node", "name", "_counter", "__weakref__")
    # numpy hands binary operations with a Tensor on the right back to the Tensor.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, name=None):
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(
                f"Only float tensors can require gradients; got dtype {data.dtype}. "
                "Cast with .astype('float32') first."
            )
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self.name = name
        self._counter = [0]

    @classmethod
    def _from_array(cls, data, requires_grad):
        # The fast path for op outputs: no validation, the primitive produced a proper array.
        tensor = cls.__new__(cls)
        tensor.data = data
        tensor.requires_grad = requires_grad
        tensor.grad = None
        tensor._node = None
        tensor.name = None
        tensor._counter = [0]
        return tensor

    # -- array facts ----------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = "" if self.device == "cpu" else ", device='gpu'"
        body = repr(backend.to_numpy(self.data)).replace("array(", "tensor(", 1)
        return body[:-1] + f"{grad}{device})" if body.endswith(")") else body

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"The truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all().")
        _note_read(self, "bool()")
        return bool(self.data)

    __hash__ = object.__hash__

    # -- conversion -----------------------------------------------------------------------------
    def numpy(self):
        """The values as a numpy array (copied from the GPU when needed; shared on the CPU)."""
        _note_read(self, "numpy()")
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        _note_read(self, "numpy.asarray()")
        array = backend.to_numpy(self.data)
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a single-element tensor; got shape {self.shape}.")
        _note_read(self, "item()")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """This tensor on ``device`` ("cpu" or "gpu"); gradients flow back across the copy."""
        if backend.check_device(device) == self.device:
            return self
        from .ops.shape import to_device

        return to_device(self, device)

    def detach(self):
        """A tensor sharing this one's data (and its version counter), cut from the graph."""
        detached = Tensor._from_array(self.data, False)
        detached._counter = self._counter
        return detached

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"Only float tensors can require gradients; got dtype {self.dtype}.")
        self.requires_grad = bool(requires_grad)
        return self

    # -- autodiff -------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Back-propagate from this tensor, adding into ``.grad`` of every leaf that requires grad.

        ``grad`` defaults to ones for a single-element tensor; the graph is freed as it is walked
        unless ``retain_graph=True``.
        """
        autodiff.backward(self, grad, retain_graph)

    def _accumulate(self, grad):
        # ``grad`` is an array this tensor owns (backward copies it when it might not be); a
        # second backward adds out of place, so the sum is owned too.
        self.grad = grad if self.grad is None else self.grad + grad

    def zero_grad(self):
        self.grad = None

    # -- in-place writes ------------------------------------------------------------------------
    @property
    def _version(self):
        """How many in-place writes flowlearn made to this tensor's data (shared with its views).

        A recorded node keeps the versions of the inputs its backward reads; backward refuses to
        run once one has changed, as PyTorch's version counter does.
        """
        return self._counter[0]

    def _bump_version(self):
        """Record an in-place write to ``data``: every path that writes into it calls this."""
        self._counter[0] += 1

    def _describe(self):
        """How error messages name this tensor: its name if it has one, else its shape and dtype."""
        if self.name:
            return f"tensor {self.name!r} of shape {self.shape} and dtype {self.dtype}"
        return f"an unnamed tensor of shape {self.shape} and dtype {self.dtype}"

    def assign(self, value):
        """Overwrite this tensor's values in place with ``value`` (broadcast, cast to its dtype).

        The write is not recorded for autodiff, as an optimizer's update is not: it is meant for
        parameters and other leaf tensors, and refused on a tensor computed by a recorded op.
        A graph recorded before the write that needs the old values refuses to back-propagate
        (the version check), rather than computing a gradient from values that are gone.
        Returns this tensor.

        >>> import flowlearn as fl
        >>> w = fl.tensor([1.0, 2.0], requires_grad=True)
        >>> w.assign([0.5, 0.5])
        tensor([0.5, 0.5], dtype=float32, requires_grad=True)
        """
        if self._node is not None:
            raise RuntimeError(
                f"assign: expected a leaf tensor; got {self._describe()} computed by the recorded op "
                f"{self._node.primitive.name!r}. An in-place write to it would not be differentiated; compute a "
                "new tensor instead, or assign to a detach()ed copy."
            )
        data = self.data
        if not getattr(data.flags, "writeable", True):
            raise ValueError(
                f"assign: expected a writable tensor; {self._describe()} holds a read-only array (made from a "
                "read-only numpy array?). Create it from a copy."
            )
        value = getattr(value, "data", value)
        xp = backend.array_module(data)
        if backend.array_module(value) is not xp:
            value = backend.to_device(value, self.device)
        value = xp.asarray(value)
        if value.shape != data.shape:
            try:
                fits = numpy.broadcast_shapes(value.shape, data.shape) == data.shape
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(
                    f"assign: expected a value that broadcasts to {self._describe()}; got shape {value.shape}."
                )
        data[...] = value
        self._bump_version()
        return self


def tensor(data, requires_grad=False, dtype=None, device="cpu", name=None):
    """Create a Tensor from array-like ``data``.

    Float data becomes float32 (the default float dtype, see :func:`flowlearn.set_floatx`) unless
    ``dtype`` is given; integer and boolean data keep their type.

    Parameters
    ----------
    data : array-like or Tensor
    requires_grad : bool
        Record operations on this tensor so that ``backward`` computes its gradient.
    dtype : str or numpy dtype, optional
    device : {"cpu", "gpu"}
    name : str, optional
        A name kept by tracing and export.

    >>> import flowlearn as fl
    >>> fl.tensor([[1, 2], [3, 4]], dtype="float64").dtype
    dtype('float64')
    """
    xp = backend.module_for_device(device)
    source = data if isinstance(data, Tensor) else None
    if source is not None:
        data = source.data
    if backend.array_module(data) is not xp:
        data = backend.to_device(data, device)
    array = _default_dtype(xp.asarray(data), dtype, xp)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor(): expected numeric or boolean data; got dtype {array.dtype}.")
    result = Tensor(array, requires_grad=requires_grad, name=name)
    if source is not None and _is_view_of(array, source.data):
        result._counter = source._counter  # one memory, one version: writes through either are seen
    return result


def as_tensor(value, like=None):
    """``value`` as a Tensor; Python and numpy scalars take the dtype and device of ``like``.

    Scalars are 'weak' as in numpy: ``float32_tensor * 2.0`` stays float32.
    """
    if isinstance(value, Tensor):
        return value
    if like is None:
        return tensor(value)
    xp = backend.array_module(like.data)
    if isinstance(value, (bool, int, float, numpy.number)):
        dtype = like.dtype
        if isinstance(value, (float, numpy.floating)) and dtype.kind != "f":
            dtype = floatx()
        elif not isinstance(value, (bool, numpy.bool_)) and dtype.kind == "b":
            dtype = numpy.dtype("int64") if isinstance(value, (int, numpy.integer)) else floatx()
        return Tensor._from_array(xp.asarray(value, dtype=dtype), False)
    array = xp.asarray(value)
    if array.dtype.kind == "f" and like.dtype.kind == "f":
        array = array.astype(like.dtype, copy=False)
    return Tensor._from_array(array, False)
