"""Random image augmentation, as ``tf.image.random_*``: flips, brightness, contrast, hue, saturation, crops and
small rotations of a batch of images.

Every op takes a batch ``(n, height, width, channels)`` or a single image ``(height, width, channels)`` of values
in [0, 1], as a numpy (or cupy) array or a flowlearn :class:`~flowlearn.core.tensor.Tensor`, and returns the
same kind (a Tensor comes back as a new Tensor that records no gradient: augmentation is input preparation).
A Tensor is augmented only in training mode (:func:`flowlearn.training_mode`, as ``Estimator.train`` and ``fit``
set it) and comes back as it was in evaluation, prediction and export, as dropout does; ``random_crop`` then
takes the central window, so the shapes agree. Arrays are always augmented: an input pipeline decides by its own
mode (``image_input_fn`` augments training batches only). ``training=True`` or ``False`` overrides either default.
Each image of a batch gets its own random draw. ``seed`` is an int, a ``numpy.random.Generator`` (drawn from, so
a pipeline passes one generator through its ops) or None (drawn from the stream
:func:`flowlearn.layers.set_random_seed` seeds). The colour ops clip their results to [0, 1].

The random numbers are drawn on the host with numpy and the image arithmetic runs in the array module of the
images (numpy or cupy), so a batch on the GPU stays there.

>>> import numpy
>>> from flowlearn.io import augmentation
>>> batch = numpy.random.default_rng(0).random((4, 8, 8, 3), dtype=numpy.float32)
>>> augmentation.random_flip_left_right(batch, seed=0).shape
(4, 8, 8, 3)
"""
import numbers

import numpy

from ..core import backend
from ..core.config import is_training
from ..core.tensor import Tensor
from .inputs import _seed_or_drawn

__all__ = [
    "central_crop", "hsv_to_rgb", "random_brightness", "random_contrast", "random_crop", "random_flip_left_right",
    "random_flip_up_down", "random_hue", "random_rotation", "random_saturation", "rgb_to_hsv",
]


# -- the shared preparation: images in, a generator, images out in the kind they came ------------------------------
class _Images:
    """A batch as an NHWC array of the images' module, and how to hand a result back in the caller's form."""

    def __init__(self, owner, images, training=None):
        self.original = images
        self.tensor = isinstance(images, Tensor)
        # Inside a model the mode decides, as for dropout; arrays are input preparation the pipeline gates itself.
        self.augment = (is_training() if self.tensor else True) if training is None else bool(training)
        data = images.data if self.tensor else images
        if not hasattr(data, "ndim"):
            data = numpy.asarray(data)
        if data.ndim not in (3, 4):
            raise ValueError(f"{owner}: expected `images` as a batch (n, height, width, channels) or one image "
                             f"(height, width, channels); got an array of shape {tuple(data.shape)}.")
        if data.dtype.kind != "f":
            raise ValueError(f"{owner}: expected `images` as floats in [0, 1] (divide uint8 pixels by 255); got "
                             f"dtype {data.dtype}.")
        self.single = data.ndim == 3
        self.xp = backend.array_module(data)
        self.batch = data[None] if self.single else data

    @property
    def n(self):
        return self.batch.shape[0]

    def draws(self, values):
        """Host random numbers as an array of the images' module and float dtype."""
        return self.xp.asarray(numpy.asarray(values, dtype=self.batch.dtype))

    def result(self, batch):
        batch = batch[0] if self.single else batch
        return Tensor(batch) if self.tensor else batch


def _check_seed(owner, seed):
    if seed is None or isinstance(seed, numpy.random.Generator):
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{owner}: received an invalid value for `seed`, expected a non-negative integer, a "
                         f"numpy.random.Generator or None. Received: seed={seed!r}")


def _generator(seed):
    """The generator of a ``seed`` :func:`_unchanged` has checked: the seed itself, or one seeded by it."""
    if isinstance(seed, numpy.random.Generator):
        return seed
    return numpy.random.default_rng(int(_seed_or_drawn(seed)))


def _unchanged(owner, images, seed):
    """Whether ``images`` (an :class:`_Images`) is to be handed back as it came, ``seed`` checked either way; no
    random number is drawn for it (the stream set_random_seed seeds moves only when something is augmented)."""
    _check_seed(owner, seed)
    return not images.augment


def _randomly(owner, images, seed, op):
    """``images`` (an :class:`_Images`) through ``op`` (a :class:`_PerImage`) with the generator ``seed`` gives, or
    as they came when not augmenting (``seed`` checked either way)."""
    if _unchanged(owner, images, seed):
        return images.original
    return op(images, _generator(seed))


def _number(owner, name, value, low=0.0, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not numpy.isfinite(value) or value < low \
            or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: received an invalid value for `{name}`, expected a number {bound}. "
                         f"Received: {name}={value!r}")
    return float(value)


def _range(owner, lower, upper):
    lower = _number(owner, "lower", lower)
    upper = _number(owner, "upper", upper)
    if lower > upper:
        raise ValueError(f"{owner}: expected lower <= upper; received lower={lower!r}, upper={upper!r}.")
    return lower, upper


def _per_image(values):
    """Per-image values shaped to broadcast over (n, height, width, channels)."""
    return values.reshape(-1, 1, 1, 1)


def _clip(xp, batch):
    # In place, and as two passes: faster than numpy's clip on float32 batches.
    xp.maximum(batch, 0.0, out=batch)
    return xp.minimum(batch, 1.0, out=batch)


# -- per-image ops in two parts: the batch's draws, then the arithmetic over a few images at a time ----------------
# A whole 32x96x96x3 batch's temporaries are megabytes each: the allocator hands them back to the system and the
# next batch faults them in again (system time the size of the arithmetic). Applied to _SUB_BATCH images at a time
# the temporaries stay small and in cache. The random values are still drawn for the whole batch first, in the
# same calls, so a seed gives the same result as arithmetic on the whole batch would.
_SUB_BATCH = 4


class _PerImage:
    """One op as ``draw(rng, n) -> tuple of host arrays of length n`` and ``apply(xp, images, out, *values)``,
    which writes the op's result on ``images`` (a run of the batch, given with the same run of each value array)
    into ``out`` (which may be ``images`` itself)."""

    def __init__(self, draw, apply):
        self.draw, self.apply = draw, apply

    def __call__(self, images, rng):
        """The op on ``images`` (an :class:`_Images`) with draws from ``rng``: a new batch."""
        values = [images.draws(v) for v in self.draw(rng, images.n)]
        out = images.xp.empty_like(images.batch)
        _apply_in_runs(images.xp, [self], [values], images.batch, out)
        return images.result(out)


def _apply_in_runs(xp, ops, values, batch, out, size=None):
    """Apply each :class:`_PerImage` op of ``ops`` in turn (``values``: each op's drawn arrays, device side) to
    ``batch``, writing into ``out`` (``batch`` itself allowed), ``size`` images (default _SUB_BATCH) at a time."""
    size = _SUB_BATCH if size is None else size
    for start in range(0, batch.shape[0], size):
        run = slice(start, start + size)
        source = batch[run]
        for op, drawn in zip(ops, values):
            op.apply(xp, source, out[run], *(v[run] for v in drawn))
            source = out[run]
    return out


# -- flips -------------------------------------------------------------------------------------------------------
def _flip_draw(rng, n):
    return (rng.random(n) < 0.5,)


def _flip_apply(axis):
    def apply(xp, images, out, chosen):
        chosen = xp.flatnonzero(chosen)  # fancy indexing copies, so out may be images
        if out is not images:
            out[...] = images
        out[chosen] = xp.flip(images[chosen], axis=axis)
    return apply


_FLIPS = {axis: _PerImage(_flip_draw, _flip_apply(axis)) for axis in (1, 2)}


def _random_flip(owner, images, seed, axis, training):
    images = _Images(owner, images, training)
    return _randomly(owner, images, seed, _FLIPS[axis])


def random_flip_left_right(images, seed=None, training=None):
    """Mirror each image left to right with probability 1/2 (``tf.image.random_flip_left_right``).

    >>> import numpy
    >>> image = numpy.array([0.0, 0.5, 1.0], numpy.float32).reshape(1, 1, 3, 1)  # one row of three pixels
    >>> sorted({tuple(random_flip_left_right(image, seed=s).ravel().tolist()) for s in range(8)})
    [(0.0, 0.5, 1.0), (1.0, 0.5, 0.0)]
    """
    return _random_flip("random_flip_left_right", images, seed, axis=2, training=training)


def random_flip_up_down(images, seed=None, training=None):
    """Mirror each image top to bottom with probability 1/2 (``tf.image.random_flip_up_down``)."""
    return _random_flip("random_flip_up_down", images, seed, axis=1, training=training)


# -- brightness and contrast -------------------------------------------------------------------------------------
def random_brightness(images, max_delta, seed=None, training=None):
    """Add one value drawn uniformly from ``[-max_delta, max_delta]`` to every pixel of each image, then clip to
    [0, 1] (``tf.image.random_brightness``, clipped).

    >>> import numpy
    >>> out = random_brightness(numpy.full((3, 2, 2, 3), 0.5, numpy.float32), 0.1, seed=0)
    >>> bool((abs(out - 0.5) <= 0.1).all())
    True
    """
    owner = "random_brightness"
    max_delta = _number(owner, "max_delta", max_delta)
    images = _Images(owner, images, training)
    return _randomly(owner, images, seed, _brightness(max_delta))


def _brightness(max_delta):
    def draw(rng, n):
        return (rng.uniform(-max_delta, max_delta, n),)

    def apply(xp, images, out, delta):
        xp.add(images, _per_image(delta), out=out)
        _clip(xp, out)
    return _PerImage(draw, apply)


def random_contrast(images, lower, upper, seed=None, training=None):
    """Scale each image's distance from its per-channel mean by a factor drawn uniformly from ``[lower, upper]``,
    then clip to [0, 1] (``tf.image.random_contrast``, clipped)."""
    owner = "random_contrast"
    lower, upper = _range(owner, lower, upper)
    images = _Images(owner, images, training)
    return _randomly(owner, images, seed, _contrast(lower, upper))


def _contrast(lower, upper):
    def draw(rng, n):
        return (rng.uniform(lower, upper, n),)

    def apply(xp, images, out, factor):
        factor = _per_image(factor)
        n, height, width, channels = images.shape
        # The channel means as one matrix product: a mean over the two strided pixel axes is ~10x slower.
        weights = xp.full((1, height * width), 1 / (height * width), images.dtype)
        mean = (weights @ images.reshape(n, height * width, channels)).reshape(n, 1, 1, channels)
        xp.multiply(images, factor, out=out)
        out += mean * (1 - factor)  # (x - mean) * factor + mean, in two passes over the images
        _clip(xp, out)
    return _PerImage(draw, apply)


# -- colour: hue and saturation through HSV ----------------------------------------------------------------------
# The colour ops work on planes: the channel axis moved first and made contiguous (one copy), because numpy's
# elementwise loops run many times faster on contiguous planes than on the strided channels of an NHWC batch.
def _planar(images):
    xp = backend.array_module(images)
    return xp.ascontiguousarray(xp.moveaxis(images, -1, 0))


def _interleaved(planes):
    xp = backend.array_module(planes)
    return xp.ascontiguousarray(xp.moveaxis(planes, 0, -1))


def _hsv_planes(planes, saturation=True):
    """Hue (in sextants, [0, 6)), saturation (None unless asked for), value and chroma (value - min) of RGB
    ``planes`` (3, ...)."""
    xp = backend.array_module(planes)
    r, g, b = planes
    # Written with out= into few buffers (the ops run on a few images at a time, so these stay in cache); each
    # step is the same float32 operation, in the same order, as the plain expression in its comment.
    value = xp.maximum(r, g)
    xp.maximum(value, b, out=value)  # max(r, g, b)
    chroma = xp.minimum(r, g)
    xp.minimum(chroma, b, out=chroma)
    xp.subtract(value, chroma, out=chroma)  # value - min(r, g, b)
    # The sextant follows the largest channel (ties go to red, then green, as in colorsys): one division.
    # hue = where(value == r, g - b, where(value == g, b - r + 2 * chroma, r - g + 4 * chroma))
    hue = xp.subtract(r, g)
    scratch = xp.multiply(chroma, 4)
    hue += scratch
    other = xp.subtract(b, r)
    xp.multiply(chroma, 2, out=scratch)
    other += scratch
    mask = xp.equal(value, g)
    xp.copyto(hue, other, where=mask)
    xp.subtract(g, b, out=other)
    xp.equal(value, r, out=mask)
    xp.copyto(hue, other, where=mask)
    xp.equal(chroma, 0, out=mask)
    xp.add(chroma, mask, out=scratch)
    hue /= scratch  # greys: 0 / 1
    # Red's sextant runs from -1 to 1: hue += 6 where negative. Exact either way: hue + 6 is a float32 sum.
    xp.less(hue, 0, out=mask)
    xp.add(hue, 6, out=other)
    xp.copyto(hue, other, where=mask)
    if not saturation:
        return hue, None, value, chroma
    # saturation = chroma / (value + (value == 0)): black has chroma 0, so saturation 0.
    xp.equal(value, 0, out=mask)
    xp.add(value, mask, out=scratch)
    return hue, xp.divide(chroma, scratch, out=other), value, chroma


def _rgb_planes(sextant, value, chroma):
    """RGB planes from hue (in sextants, any real: it is taken modulo 6), value and chroma (value * saturation).

    Each channel is ``value - chroma * clip(min(k, 4 - k), 0, 1)`` with ``k = (n + sextant) mod 6`` and n = 5,
    3, 1 for red, green, blue: the piecewise-linear form of the six sextants, with no per-sextant selection.
    """
    xp = backend.array_module(sextant)
    base = xp.divide(sextant, 6)
    xp.floor(base, out=base)
    base *= 6
    xp.subtract(sextant, base, out=base)  # sextant - 6 * floor(sextant / 6), in [0, 6)
    planes = xp.empty((3,) + sextant.shape, sextant.dtype)
    k, scratch = xp.empty_like(base), xp.empty_like(base)
    wrap = xp.empty(base.shape, bool)
    for channel, n in enumerate((5, 3, 1)):
        xp.add(base, n, out=k)
        xp.greater_equal(k, 6, out=wrap)
        xp.subtract(k, 6, out=scratch)  # exact: k is in [6, 12) there
        xp.copyto(k, scratch, where=wrap)
        xp.subtract(4, k, out=scratch)
        ramp = xp.minimum(k, scratch, out=k)
        xp.maximum(ramp, 0, out=ramp)
        xp.minimum(ramp, 1, out=ramp)
        ramp *= chroma
        xp.subtract(value, ramp, out=planes[channel])
    return planes


def rgb_to_hsv(images):
    """RGB values in [0, 1] (last axis of size 3) to hue, saturation and value, each in [0, 1]
    (``tf.image.rgb_to_hsv``): a hue of 0 is red, 1/3 green, 2/3 blue; greys have hue and saturation 0.

    >>> import numpy
    >>> rgb_to_hsv(numpy.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], numpy.float32)).round(3).tolist()
    [[0.0, 1.0, 1.0], [0.5, 1.0, 0.5]]
    """
    xp = backend.array_module(images)
    hue, saturation, value, _ = _hsv_planes(_planar(images))
    return _interleaved(xp.stack([hue / 6, saturation, value])).astype(images.dtype, copy=False)


def hsv_to_rgb(images):
    """The inverse of :func:`rgb_to_hsv` (``tf.image.hsv_to_rgb``)."""
    hue, saturation, value = _planar(images)
    return _interleaved(_rgb_planes(hue * 6, value, value * saturation)).astype(images.dtype, copy=False)


def _rgb(owner, images):
    if images.batch.shape[-1] != 3:
        raise ValueError(f"{owner}: expected RGB images (3 channels); got {images.batch.shape[-1]} channel(s).")


def random_hue(images, max_delta, seed=None, training=None):
    """Rotate each image's hue by a value drawn uniformly from ``[-max_delta, max_delta]`` (a full turn is 1, so
    ``max_delta`` is at most 0.5), keeping saturation and value (``tf.image.random_hue``). RGB images only."""
    owner = "random_hue"
    max_delta = _number(owner, "max_delta", max_delta, high=0.5)
    images = _Images(owner, images, training)
    _rgb(owner, images)
    return _randomly(owner, images, seed, _hue(max_delta))


def _to_interleaved(xp, planes, out):
    """RGB ``planes`` (3, n, h, w) written into the NHWC ``out``, clipped to [0, 1]."""
    out[...] = xp.moveaxis(planes, 0, -1)
    _clip(xp, out)


def _hue(max_delta):
    def draw(rng, n):
        return (rng.uniform(-max_delta, max_delta, n),)

    def apply(xp, images, out, delta):
        hue, _, value, chroma = _hsv_planes(_planar(images), saturation=False)
        hue += 6 * delta.reshape(-1, 1, 1)  # _rgb_planes takes the hue modulo a turn
        _to_interleaved(xp, _rgb_planes(hue, value, chroma), out)
    return _PerImage(draw, apply)


def random_saturation(images, lower, upper, seed=None, training=None):
    """Multiply each image's saturation by a factor drawn uniformly from ``[lower, upper]`` (clipped to [0, 1]),
    keeping hue and value (``tf.image.random_saturation``). RGB images only."""
    owner = "random_saturation"
    lower, upper = _range(owner, lower, upper)
    images = _Images(owner, images, training)
    _rgb(owner, images)
    return _randomly(owner, images, seed, _saturation(lower, upper))


def _saturation(lower, upper):
    def draw(rng, n):
        return (rng.uniform(lower, upper, n),)

    def apply(xp, images, out, factor):
        hue, saturation, value, _ = _hsv_planes(_planar(images))
        saturation *= factor.reshape(-1, 1, 1)
        xp.minimum(saturation, 1, out=saturation)
        saturation *= value
        _to_interleaved(xp, _rgb_planes(hue, value, saturation), out)
    return _PerImage(draw, apply)


def _saturation_and_hue(saturation, hue):
    """The ops ``saturation`` (a :func:`_saturation`) then ``hue`` (a :func:`_hue`) in one round trip through
    HSV, for a pipeline that applies both.

    Scaling the saturation keeps hue and value, so the second op's conversion to HSV would only give back the
    first one's hue, value and new chroma: the fused op skips that conversion and the RGB batch between them
    (the two ops cost ~80% of the face examples' augmentation; fused they cost about half as much). The values
    are drawn as the two ops draw them, in the same order, so a seed picks the same factors and angles; the
    pixels equal the two ops' to float32 rounding (the middle conversion's roundings are gone).
    """
    def draw(rng, n):
        return saturation.draw(rng, n) + hue.draw(rng, n)

    def apply(xp, images, out, factor, delta):
        sextant, _, value, chroma = _hsv_planes(_planar(images), saturation=False)
        # The new chroma, value * min(saturation * factor, 1), without the saturation's division.
        chroma *= factor.reshape(-1, 1, 1)
        xp.minimum(chroma, value, out=chroma)
        sextant += 6 * delta.reshape(-1, 1, 1)
        _to_interleaved(xp, _rgb_planes(sextant, value, chroma), out)
    return _PerImage(draw, apply)


# -- geometry: crops and rotations -------------------------------------------------------------------------------
def _crop_size(owner, size, height, width):
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if len(size) == 3:
        size = size[:2]  # tf.image.random_crop's (height, width, channels)
    if len(size) != 2 or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in size):
        raise ValueError(f"{owner}: received an invalid value for `size`, expected (height, width) as positive "
                         f"integers. Received: size={size!r}")
    if size[0] > height or size[1] > width:
        raise ValueError(f"{owner}: the crop {tuple(size)} is larger than the images ({height}, {width}).")
    return int(size[0]), int(size[1])


def _crop_at(images, top, left, height, width):
    """The ``height`` x ``width`` window of each image whose corner is at its (``top``, ``left``)."""
    xp = images.xp
    rows = xp.asarray(top).reshape(-1, 1) + xp.arange(height)
    columns = xp.asarray(left).reshape(-1, 1) + xp.arange(width)
    which = xp.arange(images.n).reshape(-1, 1, 1)
    return images.batch[which, rows[:, :, None], columns[:, None, :]]


def random_crop(images, size, seed=None, training=None):
    """A window of ``size = (height, width)`` at a uniformly drawn position of each image
    (``tf.image.random_crop``, one position per image).

    >>> import numpy
    >>> random_crop(numpy.zeros((5, 32, 32, 3), numpy.float32), (24, 24), seed=0).shape
    (5, 24, 24, 3)
    """
    owner = "random_crop"
    images = _Images(owner, images, training)
    _, height, width, _ = images.batch.shape
    crop_h, crop_w = _crop_size(owner, size, height, width)
    if _unchanged(owner, images, seed):
        return central_crop(images.original, (crop_h, crop_w))
    rng = _generator(seed)
    top = rng.integers(0, height - crop_h + 1, images.n)
    left = rng.integers(0, width - crop_w + 1, images.n)
    return images.result(_crop_at(images, top, left, crop_h, crop_w))


def central_crop(images, size):
    """The central ``size = (height, width)`` window of each image: what evaluation uses where training crops
    at random (not random; no seed)."""
    owner = "central_crop"
    images = _Images(owner, images)
    _, height, width, _ = images.batch.shape
    crop_h, crop_w = _crop_size(owner, size, height, width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return images.result(images.batch[:, top:top + crop_h, left:left + crop_w])


def random_rotation(images, max_degrees, seed=None, fill_mode="nearest", fill_value=0.0, training=None):
    """Rotate each image about its centre by an angle drawn uniformly from ``[-max_degrees, max_degrees]``
    degrees, sampling bilinearly (Keras' ``RandomRotation``, meant for small angles such as 10-20 degrees).

    Pixels that come from outside the image take the nearest edge pixel (``fill_mode="nearest"``) or
    ``fill_value`` (``fill_mode="constant"``). A positive angle turns the picture counter-clockwise.
    """
    owner = "random_rotation"
    max_degrees = _number(owner, "max_degrees", max_degrees, high=180.0)
    if fill_mode not in ("nearest", "constant"):
        raise ValueError(f"{owner}: received an invalid value for `fill_mode`, expected 'nearest' or 'constant'. "
                         f"Received: fill_mode={fill_mode!r}")
    images = _Images(owner, images, training)
    if _unchanged(owner, images, seed):
        return images.original
    rng = _generator(seed)
    xp = images.xp
    n, height, width, _ = images.batch.shape
    angles = numpy.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    cos, sin = (images.draws(f(angles)).reshape(-1, 1, 1) for f in (numpy.cos, numpy.sin))
    # Each output pixel reads the input where the inverse rotation takes it (coordinates about the centre, y down).
    y = xp.arange(height, dtype=images.batch.dtype).reshape(1, -1, 1) - (height - 1) / 2
    x = xp.arange(width, dtype=images.batch.dtype).reshape(1, 1, -1) - (width - 1) / 2
    source_x = cos * x - sin * y + (width - 1) / 2
    source_y = sin * x + cos * y + (height - 1) / 2
    inside = (source_x > -1) & (source_x < width) & (source_y > -1) & (source_y < height)
    source_x = xp.clip(source_x, 0, width - 1)
    source_y = xp.clip(source_y, 0, height - 1)
    x0 = xp.minimum(xp.floor(source_x).astype(numpy.int64), width - 2 if width > 1 else 0)
    y0 = xp.minimum(xp.floor(source_y).astype(numpy.int64), height - 2 if height > 1 else 0)
    x1, y1 = xp.minimum(x0 + 1, width - 1), xp.minimum(y0 + 1, height - 1)
    fx, fy = (source_x - x0)[..., None], (source_y - y0)[..., None]
    batch = images.batch
    # Gathering rows of the (pixels, channels) matrix by flat index is several times faster than indexing
    # the 4-d batch with three index arrays.
    pixels = batch.reshape(-1, batch.shape[-1])
    rows = xp.arange(n).reshape(-1, 1, 1) * height

    def at(yy, xx):
        return xp.take(pixels, ((rows + yy) * width + xx).ravel(), axis=0).reshape(batch.shape)

    top = at(y0, x0)
    top += (at(y0, x1) - top) * fx
    bottom = at(y1, x0)
    bottom += (at(y1, x1) - bottom) * fx
    bottom -= top
    bottom *= fy
    out = (top + bottom).astype(batch.dtype, copy=False)
    if fill_mode == "constant":
        out = xp.where(inside[..., None], out, xp.asarray(fill_value, dtype=out.dtype))
    return images.result(out)
