"""The Layer base class: configuration in ``__init__``, weights in ``build``, computation in ``call``.

A layer is created with its hyper-parameters only (validated at once); the first ``__call__``
reads the input's shape, calls ``build`` to create the weights, and from then on the layer's state
is locked: an input whose rank or feature count does not match what the layer was built for raises
``ValueError`` with the expected and received shapes.
"""
import collections
import functools
import inspect
import math
import re

import numpy

from ..core import backend, initializers
from ..core.config import floatx, is_training, no_grad
from ..core.tensor import Tensor, tensor
from . import _args, regularizers, seeding

_REGISTRY = {}
_uids = collections.Counter()


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """``base`` the first time, then ``base_1``, ``base_2``, ... (as Keras names layers)."""
    count = _uids[base]
    _uids[base] += 1
    return base if count == 0 else f"{base}_{count}"


def clear_session():
    """Restart automatic layer names from ``dense``, ``conv2d``, ... (as ``keras.backend.clear_session``)."""
    _uids.clear()


def registered_layers():
    """Layer classes by class name: the only classes :func:`flowlearn.layers.deserialize` builds."""
    return dict(_REGISTRY)


def _shape_repr(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class InputSpec:
    """What a layer accepts: a rank (``ndim`` or ``min_ndim``), sizes on some ``axes``, or a full ``shape``.

    ``axes`` maps an axis (negative counts from the end) to its required size; ``shape`` gives every
    dimension, None where any size goes (the batch dimension).
    """

    __slots__ = ("ndim", "min_ndim", "axes", "shape")

    def __init__(self, ndim=None, min_ndim=None, axes=None, shape=None):
        self.ndim = len(shape) if shape is not None else ndim
        self.min_ndim = min_ndim
        self.axes = dict(axes or {})
        self.shape = None if shape is None else tuple(shape)

    def check(self, layer_name, shape):
        """Raise ValueError unless ``shape`` (a tuple) satisfies this spec."""
        prefix = f'Layer "{layer_name}": expected input'
        if self.shape is not None:
            if len(shape) != len(self.shape) or any(e is not None and e != d for e, d in zip(self.shape, shape)):
                raise ValueError(f"{prefix} of shape {_shape_repr(self.shape)}; got shape {_shape_repr(shape)}.")
            return
        if self.ndim is not None and len(shape) != self.ndim:
            raise ValueError(f"{prefix} of rank {self.ndim}; got shape {_shape_repr(shape)}.")
        if self.min_ndim is not None and len(shape) < self.min_ndim:
            raise ValueError(f"{prefix} of rank >= {self.min_ndim}; got shape {_shape_repr(shape)}.")
        for axis, size in self.axes.items():
            if -len(shape) <= axis < len(shape) and shape[axis] != size:
                where = f"last dimension {size}" if axis == -1 else f"dimension {size} on axis {axis}"
                raise ValueError(f"{prefix} with {where}; got shape {_shape_repr(shape)}.")


def _as_shape(owner, shape):
    if isinstance(shape, Tensor):
        shape = shape.shape
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        raise ValueError(
            f'Layer "{owner}": expected an input shape (a tuple of ints or None); got {shape!r}.'
        ) from None


def _locked_build(build):
    """Wrap a ``build`` so it runs once: later calls only check the shape against the built state."""

    @functools.wraps(build)
    def wrapper(self, input_shape):
        if self._building:  # a subclass's build calling super().build(...)
            return build(self, input_shape)
        shape = _as_shape(self.name, input_shape)
        if self.input_spec is not None:
            self.input_spec.check(self.name, shape)
        if self.built:
            return None
        count = len(self._weights)
        self._building = True
        try:
            build(self, shape)
        except BaseException:
            del self._weights[count:]
            self._penalties = [(w, r) for w, r in self._penalties if any(w is v for v, _ in self._weights)]
            raise
        finally:
            self._building = False
        self.built = True
        self.build_input_shape = (None,) + shape[1:] if shape else shape
        return None

    wrapper._locked = True
    return wrapper


def _float_dtype(owner, dtype):
    if dtype is None:
        return floatx()
    try:
        dtype = numpy.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise _args.invalid(owner, "dtype", "a float dtype such as 'float32'", dtype)
    return dtype


class Layer:
    """Base class of all layers.

    Subclasses validate and store their configuration in ``__init__`` (after calling
    ``super().__init__(**kwargs)``), create weights with :meth:`add_weight` in ``build(input_shape)``
    and compute in ``call(inputs, training=None)``.

    Parameters
    ----------
    name : str, optional
        Unique by default: ``dense``, ``dense_1``, ... per class. Weights are named ``<name>/<weight>``.
    trainable : bool
        False freezes every weight (they move to ``non_trainable_weights``).
    dtype : float dtype, optional
        Of the weights and computation; the default float dtype (float32) unless given. Inputs of
        another dtype are cast to it.
    input_shape : tuple, optional
        The input's shape without the batch dimension, for a model to build from (Keras 2 style).

    >>> import numpy as np, flowlearn as fl
    >>> layer = fl.layers.Dense(3, name="out")
    >>> layer(np.ones((2, 4))).shape
    (2, 3)
    >>> [w.name for w in layer.weights]
    ['out/kernel', 'out/bias']
    """

    # Cast inputs to the layer's dtype; layers that take integer input (Embedding) turn this off.
    _autocast = True
    _call_takes_training = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY.setdefault(cls.__name__, cls)
        build = cls.__dict__.get("build")
        if build is not None and not getattr(build, "_locked", False):
            cls.build = _locked_build(build)
        cls._call_takes_training = "training" in inspect.signature(cls.call).parameters

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None):
        owner = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise _args.invalid(owner, "name", "a non-empty string", name)
        self.name = name or unique_name(_snake_case(owner))
        self._trainable = _args.boolean(owner, "trainable", trainable)
        self.dtype = _float_dtype(owner, dtype)
        self.input_shape = (
            None if input_shape is None else _args.shape_tuple(owner, "input_shape", input_shape, allow_none=True)
        )
        self.built = False
        self.build_input_shape = None
        self.input_spec = None
        self._weights = []  # (tensor, registered as trainable), in creation order
        self._penalties = []  # (tensor, regularizer)
        self._rng = None
        self._device = "cpu"
        self._building = False

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (batch dimension first, may be None).

        Runs once; called again (or called on an input) with an incompatible shape it raises
        ValueError, with a compatible one it does nothing.
        """

    def add_weight(self, name, shape, initializer="glorot_uniform", trainable=True, regularizer=None, dtype=None):
        """Create a weight Tensor named ``<layer>/<name>``, drawn by ``initializer`` and owned by this layer.

        ``trainable`` weights require grad and are listed in ``trainable_weights``; the others (such as
        batch-norm moving statistics) in ``non_trainable_weights``. A ``regularizer`` (name, dict or
        instance, see :mod:`flowlearn.layers.regularizers`) adds its penalty to
        :meth:`regularization_losses`.
        """
        owner = f'Layer "{self.name}"'
        full_name = f"{self.name}/{name}"
        if any(w.name == full_name for w, _ in self._weights):
            raise ValueError(f"{owner}: a weight named {name!r} already exists.")
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"{owner}: weight {name!r} needs a shape of non-negative sizes; got {shape}.")
        dtype = self.dtype if dtype is None else numpy.dtype(dtype)
        init = initializers.get(initializer)
        rng = self._rng if self._rng is not None else seeding.weights_rng()
        array = numpy.asarray(init(shape, dtype=dtype.name, rng=rng), dtype=dtype)
        if array.shape != shape:
            raise ValueError(f"{owner}: initializer for {name!r} returned shape {array.shape}; expected {shape}.")
        weight = tensor(array, requires_grad=bool(trainable) and self._trainable, dtype=dtype,
                        device=self._device, name=full_name)
        self._weights.append((weight, bool(trainable)))
        regularizer = regularizers.get(regularizer)
        if regularizer is not None:
            self._penalties.append((weight, regularizer))
        return weight

    def get_build_config(self):
        """``{"input_shape": ...}`` the layer was built with (None before it is built), for saving."""
        if not self.built:
            return None
        return {"input_shape": list(self.build_input_shape)}

    def build_from_config(self, config):
        """Build from :meth:`get_build_config` output (how a loaded model recreates its weights)."""
        if config is not None and not self.built:
            self.build(tuple(config["input_shape"]))

    # -- calling --------------------------------------------------------------------------------
    def call(self, inputs, training=None):
        """The computation, on a Tensor already converted, built for and checked."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=None).")

    def __call__(self, inputs, training=None):
        """Run the layer: convert ``inputs`` to a Tensor, build on the first call, check the shape, call.

        ``training=None`` reads :func:`flowlearn.is_training` (set by ``fl.training_mode``).
        """
        inputs = self._prepare_input(inputs)
        if not self._call_takes_training:
            return self.call(inputs)
        return self.call(inputs, training=is_training() if training is None else bool(training))

    def _prepare_input(self, inputs):
        if isinstance(inputs, Tensor):
            if self._autocast and inputs.dtype != self.dtype:
                inputs = inputs.astype(self.dtype)
            if not self.built and not self._weights:
                self._device = inputs.device  # build on the device the data lives on
        else:
            inputs = tensor(inputs, dtype=self.dtype if self._autocast else None, device=self._device)
        if not self.built:
            self.build(inputs.shape)
        elif self.input_spec is not None:
            self.input_spec.check(self.name, inputs.shape)
        return inputs

    def _checked_shape(self, input_shape):
        """``input_shape`` as a tuple, checked against the input spec (for compute_output_shape)."""
        shape = _as_shape(self.name, input_shape)
        if self.input_spec is not None:
            self.input_spec.check(self.name, shape)
        return shape

    def compute_output_shape(self, input_shape):
        """The output's shape for ``input_shape`` (batch dimension first, may be None).

        This default runs the layer once on zeros (building it); layers override it with a formula.
        """
        input_shape = _as_shape(self.name, input_shape)
        probe = tuple(1 if d is None else d for d in input_shape)
        dtype = self.dtype if self._autocast else "int64"
        with no_grad():
            output = self(numpy.zeros(probe, dtype=dtype), training=False)
        return (input_shape[0],) + tuple(output.shape[1:])

    # -- weights --------------------------------------------------------------------------------
    def _walk(self):
        """(layer, trainable) for this layer and every layer held in its attributes, once each.

        A layer kept in an attribute (or in a list or tuple attribute) is part of this one, so
        containers get weights, regularization and freezing for free.
        """
        seen = {id(self)}
        stack = [(self, self._trainable)]
        while stack:
            layer, trainable = stack.pop()
            yield layer, trainable
            children = []
            for value in vars(layer).values():
                items = value if isinstance(value, (list, tuple)) else (value,)
                for item in items:
                    if isinstance(item, Layer) and id(item) not in seen:
                        seen.add(id(item))
                        children.append((item, trainable and item._trainable))
            stack.extend(reversed(children))

    @property
    def weights(self):
        """Every weight Tensor, in creation order (this layer's, then those of layers it holds)."""
        return [w for layer, _ in self._walk() for w, _ in layer._weights]

    @property
    def trainable_weights(self):
        return [w for layer, on in self._walk() if on for w, trainable in layer._weights if trainable]

    @property
    def non_trainable_weights(self):
        return [w for layer, on in self._walk() for w, trainable in layer._weights if not (on and trainable)]

    # Keras 3 names for the same lists.
    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = _args.boolean(type(self).__name__, "trainable", value)
        for layer, on in self._walk():
            for w, trainable in layer._weights:
                w.requires_grad = on and trainable

    @property
    def device(self):
        return self._device

    def to(self, device):
        """Move every weight to ``device`` ("cpu" or "gpu") in place; returns the layer."""
        # Check, copy every weight, and only then record the device: a failure (no cupy, out of GPU
        # memory) leaves the layer wholly where it was, not marked as moved with its weights behind.
        backend.module_for_device(device)
        layers = [layer for layer, _ in self._walk()]
        moved = [[backend.to_device(w.data, device) for w, _ in layer._weights] for layer in layers]
        for layer, arrays in zip(layers, moved):
            for (w, _), array in zip(layer._weights, arrays):
                w.data = array
                w.grad = None
            layer._device = device
        return self

    def get_weights(self):
        """Copies of the weights as numpy arrays, in the order of :attr:`weights`."""
        arrays = []
        for w in self.weights:
            array = backend.to_numpy(w.data)
            arrays.append(array.copy() if array is w.data else array)
        return arrays

    def set_weights(self, weights):
        """Overwrite the weights in place from numpy arrays (shapes checked before anything changes)."""
        params = self.weights
        weights = list(weights)
        if not params and weights and not self.built:
            raise ValueError(
                f'Layer "{self.name}": set_weights needs the layer built first: call it on an input or call '
                "build(input_shape)."
            )
        if len(weights) != len(params):
            raise ValueError(
                f'Layer "{self.name}": set_weights expected {len(params)} arrays with shapes '
                f"{[tuple(w.shape) for w in params]}; got {len(weights)}."
            )
        arrays = [backend.to_numpy(getattr(v, "data", v)) for v in weights]
        arrays = [numpy.asarray(a) for a in arrays]
        for w, array in zip(params, arrays):
            if array.shape != w.shape:
                raise ValueError(
                    f'Layer "{self.name}": weight "{w.name}" expected shape {w.shape}; got {array.shape}.'
                )
        for w, array in zip(params, arrays):
            w.assign(array)  # in place, bumping the version that recorded graphs check

    def count_params(self):
        """The number of scalars in all weights (the layer must be built)."""
        if not self.built:
            raise ValueError(
                f'Layer "{self.name}": count_params needs the layer built first (call it or build(input_shape)).'
            )
        return sum(math.prod(w.shape) for w in self.weights)

    def regularization_losses(self):
        """Penalty Tensors (scalars) of the weights that have a regularizer, from their current values.

        A model adds their sum to the training loss at each step, so gradients flow to the weights.
        """
        return [regularizer(w) for layer, _ in self._walk() for w, regularizer in layer._penalties]

    # -- configuration --------------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments as plain JSON values: ``type(layer).from_config(config)`` rebuilds it."""
        config = {"name": self.name, "trainable": self._trainable, "dtype": self.dtype.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """A new, unbuilt layer with the configuration from :meth:`get_config`."""
        return cls(**config)


Layer.build = _locked_build(Layer.build)
