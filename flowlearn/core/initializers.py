"""Weight initializers with Keras semantics, drawing from an explicit ``numpy.random.Generator``.

Every initializer is called as ``init(shape, dtype="float32", rng=None)`` and returns a numpy
array; ``rng`` is a Generator, an int seed, or None (a fresh, unseeded generator). Random values
are drawn directly in float32 (or float64) rather than drawn in float64 and cast.

Fans follow Keras: a 2-D kernel ``(in, out)`` has ``fan_in=in, fan_out=out``; a convolution kernel
``(kh, kw, in, out)`` (HWIO, or any ``(*spatial, in, out)``) multiplies both by the receptive
field size ``kh * kw``.

>>> from flowlearn.core import initializers
>>> init = initializers.get("glorot_uniform")
>>> w = init((3, 3, 16, 32), rng=0)
>>> w.shape, w.dtype, bool(abs(w).max() <= (6 / (9 * 16 + 9 * 32)) ** 0.5)
((3, 3, 16, 32), dtype('float32'), True)
"""
import inspect
import math
import numbers

import numpy

from .serialization import Registry, Serializable

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunNormal", "LecunUniform",
    "compute_fans", "get", "serialize",
]

# Standard deviation of a standard normal truncated to [-2, 2]: dividing by it makes the
# truncated draws of VarianceScaling have exactly the requested variance (as Keras does).
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape``, as Keras computes them.

    >>> compute_fans((784, 256))
    (784, 256)
    >>> compute_fans((5, 5, 1, 32))   # conv kernel: receptive field 25
    (25, 800)
    """
    shape = tuple(shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _generator(rng):
    if rng is None:
        return numpy.random.default_rng()
    if isinstance(rng, numpy.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return numpy.random.default_rng(int(rng))
    raise TypeError(f"Initializer: expected a numpy.random.Generator, an int seed or None for `rng`; got {rng!r}.")


def _shape(shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"Initializer: expected a shape (tuple of non-negative ints); got {shape!r}.") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"Initializer: expected a shape of non-negative sizes; got {shape}.")
    return shape


def _float_dtype(owner, dtype):
    dtype = numpy.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"{owner}: expected a floating-point dtype for random values; got dtype={dtype.name!r}.")
    return dtype


def _sampling_dtype(dtype):
    # numpy's Generator draws float32 or float64 natively; float16 is drawn in float32 and cast.
    return dtype if dtype in (numpy.float32, numpy.float64) else numpy.dtype(numpy.float32)


def _number(owner, name, value, positive=False, non_negative=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: expected a finite number for `{name}`; got {name}={value!r}.")
    if (positive and value <= 0) or (non_negative and value < 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{owner}: expected `{name}` {bound}; got {name}={value!r}.")
    return float(value)


def _uniform(rng, shape, dtype, low, high):
    values = rng.random(shape, dtype=_sampling_dtype(dtype))
    values *= high - low
    values += low
    return values.astype(dtype, copy=False)


def _normal(rng, shape, dtype, mean, stddev, truncated):
    values = rng.standard_normal(shape, dtype=_sampling_dtype(dtype))
    if truncated:
        flat = values.reshape(-1)
        redraw = numpy.flatnonzero(numpy.abs(flat) > 2.0)
        while redraw.size:  # about 4.6% of draws each round
            fresh = rng.standard_normal(redraw.size, dtype=flat.dtype)
            flat[redraw] = fresh
            redraw = redraw[numpy.abs(fresh) > 2.0]
    values *= stddev
    values += mean
    return values.astype(dtype, copy=False)


class Initializer(Serializable):
    """Base class: ``__call__(shape, dtype="float32", rng=None) -> numpy array``.

    The config is the constructor arguments (see :class:`~flowlearn.core.serialization.Serializable`);
    subclasses register under their class name, so :func:`get` rebuilds them from
    ``{"class_name": ..., "config": ...}`` (for a subclass defined before the call).
    """

    registry = Registry("initializer", fold=lambda name: name.lower().replace("_", ""))

    def __call__(self, shape, dtype="float32", rng=None):
        raise NotImplementedError


class Constant(Initializer):
    """Every value equal to ``value`` (any dtype, integer ones included).

    >>> Constant(0.5)((2,))
    array([0.5, 0.5], dtype=float32)
    """

    def __init__(self, value=0.0):
        self.value = _number("Constant", "value", value)

    def __call__(self, shape, dtype="float32", rng=None):
        return numpy.full(_shape(shape), self.value, dtype=numpy.dtype(dtype))


class Zeros(Constant):
    """All zeros.

    >>> Zeros()((2,), dtype="int64")
    array([0, 0])
    """

    def __init__(self):
        super().__init__(0.0)


class Ones(Constant):
    """All ones."""

    def __init__(self):
        super().__init__(1.0)


class RandomUniform(Initializer):
    """Uniform values between ``minval`` and ``maxval``.

    >>> w = RandomUniform(-1.0, 1.0)((1000,), rng=0)
    >>> bool(w.min() >= -1.0 and w.max() <= 1.0)
    True
    """

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval = _number("RandomUniform", "minval", minval)
        self.maxval = _number("RandomUniform", "maxval", maxval)
        if self.maxval < self.minval:
            raise ValueError(f"RandomUniform: expected minval <= maxval; got minval={minval!r}, maxval={maxval!r}.")

    def __call__(self, shape, dtype="float32", rng=None):
        dtype = _float_dtype("RandomUniform", dtype)
        return _uniform(_generator(rng), _shape(shape), dtype, self.minval, self.maxval)


class RandomNormal(Initializer):
    """Normal values with the given mean and standard deviation."""

    _truncated = False

    def __init__(self, mean=0.0, stddev=0.05):
        owner = type(self).__name__
        self.mean = _number(owner, "mean", mean)
        self.stddev = _number(owner, "stddev", stddev, non_negative=True)

    def __call__(self, shape, dtype="float32", rng=None):
        dtype = _float_dtype(type(self).__name__, dtype)
        return _normal(_generator(rng), _shape(shape), dtype, self.mean, self.stddev, self._truncated)


class TruncatedNormal(RandomNormal):
    """Normal values, re-drawn while more than 2 ``stddev`` from the mean (as TensorFlow does).

    The result's standard deviation is about ``0.88 * stddev``.

    >>> w = TruncatedNormal(stddev=1.0)((10000,), rng=0)
    >>> bool(abs(w).max() <= 2.0)
    True
    """

    _truncated = True


class VarianceScaling(Initializer):
    """Values of variance ``scale / n``, ``n`` the fan chosen by ``mode`` (Keras's VarianceScaling).

    ``mode``: "fan_in", "fan_out" or "fan_avg" (``(fan_in + fan_out) / 2``); ``distribution``:
    "truncated_normal" (standard deviation corrected for the truncation at 2 stddev, so the
    variance is exactly ``scale / n``), "untruncated_normal" or "uniform" (on
    ``[-sqrt(3 * scale / n), sqrt(3 * scale / n))``).
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        owner = type(self).__name__
        self.scale = _number(owner, "scale", scale, positive=True)
        if mode not in self._MODES:
            raise ValueError(f"{owner}: expected `mode` to be one of {self._MODES}; got mode={mode!r}.")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(
                f"{owner}: expected `distribution` to be one of {self._DISTRIBUTIONS}; "
                f"got distribution={distribution!r}."
            )
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, dtype="float32", rng=None):
        shape = _shape(shape)
        dtype = _float_dtype(type(self).__name__, dtype)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = _generator(rng)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return _uniform(rng, shape, dtype, -limit, limit)
        truncated = self.distribution == "truncated_normal"
        stddev = math.sqrt(variance) / (_TRUNCATED_STD if truncated else 1.0)
        return _normal(rng, shape, dtype, 0.0, stddev, truncated)


# The presets fix VarianceScaling's arguments and take none, so their config is empty (as in Keras).
class GlorotUniform(VarianceScaling):
    """Glorot (Xavier) uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")


class GlorotNormal(VarianceScaling):
    """Glorot (Xavier) normal: truncated normal of standard deviation ``sqrt(2 / (fan_in + fan_out))``."""

    def __init__(self):
        super().__init__(1.0, "fan_avg", "truncated_normal")


class HeUniform(VarianceScaling):
    """He uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / fan_in)``."""

    def __init__(self):
        super().__init__(2.0, "fan_in", "uniform")


class HeNormal(VarianceScaling):
    """He normal: truncated normal of standard deviation ``sqrt(2 / fan_in)``."""

    def __init__(self):
        super().__init__(2.0, "fan_in", "truncated_normal")


class LecunNormal(VarianceScaling):
    """LeCun normal: truncated normal of standard deviation ``sqrt(1 / fan_in)``."""

    def __init__(self):
        super().__init__(1.0, "fan_in", "truncated_normal")


class LecunUniform(VarianceScaling):
    """LeCun uniform: ``U(-limit, limit)`` with ``limit = sqrt(3 / fan_in)``."""

    def __init__(self):
        super().__init__(1.0, "fan_in", "uniform")


# Names match in any case with or without underscores (the registry folds them), so class names
# ("GlorotUniform") work too; the aliases are Keras's short names.
Initializer.registry.names.update(
    zeros=Zeros, ones=Ones, constant=Constant, random_uniform=RandomUniform, random_normal=RandomNormal,
    truncated_normal=TruncatedNormal, variance_scaling=VarianceScaling, glorot_uniform=GlorotUniform,
    glorot_normal=GlorotNormal, he_uniform=HeUniform, he_normal=HeNormal, lecun_normal=LecunNormal,
    lecun_uniform=LecunUniform,
)
Initializer.registry.aliases.update(zero=Zeros, one=Ones, uniform=RandomUniform, normal=RandomNormal)


def serialize(initializer):
    """``{"class_name": ..., "config": ...}`` for an Initializer (None for None), which :func:`get` reads back.

    >>> serialize(Constant(0.5))
    {'class_name': 'Constant', 'config': {'value': 0.5}}
    """
    return Initializer.registry.serialize(
        initializer, "only Initializer instances have a config; subclass flowlearn.core.initializers.Initializer."
    )


def get(identifier):
    """An initializer from a name, an instance, a callable, a class or ``{"class_name", "config"}``.

    None gives None; any other callable ``f(shape, dtype, rng)`` is returned as is.

    >>> get("he_normal")
    HeNormal()
    >>> get({"class_name": "RandomUniform", "config": {"minval": 0.0, "maxval": 1.0}})
    RandomUniform(minval=0.0, maxval=1.0)
    """
    if inspect.isclass(identifier) and issubclass(identifier, Initializer):
        return identifier()
    return Initializer.registry.resolve(
        identifier,
        "Could not interpret initializer {identifier!r}: expected a name, an Initializer, a callable or a config dict.",
    )
