"""Primitives: the differentiable operations every computation in flowlearn is made of.

A primitive is a small class with a registry ``name`` and two static methods:

``forward(xp, *arrays, **attrs) -> (output, saved)``
    computes the output array with ``xp`` (numpy or cupy) and returns what backward needs;
``backward(xp, grad, saved, needs, **attrs) -> tuple``
    returns one gradient per input, computing only those whose ``needs`` flag is set (None elsewhere).

A primitive whose backward reads no input values (only shapes and dtypes, as ``add`` does) sets
``saves_inputs = False``; the others have the versions of their inputs checked before backward
(see :class:`Node`).

``attrs`` are plain JSON values (numbers, strings, lists, None), so a recorded node can be replayed
from its name and attrs alone: that is what makes traced graphs exportable without pickle.
Running :func:`apply` on tensors records a :class:`Node`, which backward and tracing share.
"""
from . import backend
from .config import modes
from .tensor import Tensor, _is_view_of

REGISTRY = {}


class Primitive:
    """Base class of all primitives; subclasses register themselves under ``name``."""

    name = None
    differentiable = True
    # False when backward needs no input values, so an in-place write to an input between forward
    # and backward cannot change the gradient and is not an error.
    saves_inputs = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name is None:
            return
        if cls.name in REGISTRY:
            raise RuntimeError(f"A primitive named {cls.name!r} is already registered ({REGISTRY[cls.name]}).")
        REGISTRY[cls.name] = cls

    @staticmethod
    def forward(xp, *arrays, **attrs):
        raise NotImplementedError

    @staticmethod
    def backward(xp, grad, saved, needs, **attrs):
        raise NotImplementedError


def get_primitive(name):
    """The primitive class registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown primitive {name!r}; registered primitives: {sorted(REGISTRY)}.") from None


class Node:
    """One application of a primitive: what backward walks and what tracing records.

    ``versions`` holds the inputs' versions at forward time (None when the primitive's backward
    reads no input values): backward refuses a node whose inputs were written in place since.
    """

    __slots__ = ("primitive", "inputs", "attrs", "saved", "needs", "versions")

    def __init__(self, primitive, inputs, attrs, saved, needs, versions=None):
        self.primitive = primitive
        self.inputs = inputs
        self.attrs = attrs
        self.saved = saved
        self.needs = needs
        self.versions = versions

    def release(self):
        """Drop saved arrays and input references once backward has used them."""
        self.saved = None
        self.inputs = None


def _check_same_device(primitive, inputs):
    devices = {backend.device_of(t.data) for t in inputs}
    if len(devices) > 1:
        raise ValueError(
            f"{primitive.name}: all inputs must live on one device; got tensors on {sorted(devices)}. "
            "Move them with .to(device) first."
        )


def apply(primitive, inputs, **attrs):
    """Run ``primitive`` on Tensors ``inputs`` and return the output Tensor.

    The node is recorded when gradients are enabled and some input requires them, or while
    :func:`flowlearn.trace` is recording.
    """
    if backend._cupy is not None and len(inputs) > 1:
        _check_same_device(primitive, inputs)
    first = inputs[0].data
    xp = backend.array_module(first)
    output, saved = primitive.forward(xp, *[t.data for t in inputs], **attrs)
    needs = None
    if modes.grad_enabled and primitive.differentiable:
        needs = tuple([t.requires_grad for t in inputs])
        if True not in needs:
            needs = None
    result = Tensor._from_array(output, needs is not None)
    if output.base is not None or output is first:
        # A view of an input (reshape, transpose, basic indexing), or the input itself, shares its
        # version counter, so that a write to either is seen by the nodes that saved the other.
        for t in inputs:
            if _is_view_of(output, t.data):
                result._counter = t._counter
                break
    tape = modes.tape
    if needs is not None:
        versions = None
        if primitive.saves_inputs:  # two inputs spelled out: a third of the list comprehension's cost
            if len(inputs) == 2:
                versions = (inputs[0]._counter[0], inputs[1]._counter[0])
            else:
                versions = tuple([t._counter[0] for t in inputs])
        node = Node(primitive, inputs, attrs, saved, needs, versions)
        result._node = node
        if tape is not None:
            tape.append((node, result))
    elif tape is not None:
        tape.append((Node(primitive, inputs, attrs, None, None), result))
    return result
