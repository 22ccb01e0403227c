"""The augmentation ops: each one's effect checked exactly where it can be, bounded where it is random."""
import colorsys

import numpy
import pytest

import flowlearn as fl
from flowlearn.io import augmentation as aug


@pytest.fixture
def batch():
    return numpy.random.default_rng(0).random((64, 6, 5, 3), dtype=numpy.float32)


def _flatten(images):
    return images.reshape(len(images), -1)


# -- flips ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op, axis", [(aug.random_flip_left_right, 2), (aug.random_flip_up_down, 1)])
def test_flips_mirror_each_image_or_leave_it(batch, op, axis):
    out = op(batch, seed=1)
    mirrored = numpy.flip(batch, axis=axis)
    flipped = numpy.array([numpy.array_equal(o, m) for o, m in zip(out, mirrored)])
    kept = numpy.array([numpy.array_equal(o, b) for o, b in zip(out, batch)])
    assert (flipped ^ kept).all()  # each image exactly one of the two
    assert 16 < flipped.sum() < 48  # about half, each image its own draw
    numpy.testing.assert_array_equal(op(batch, seed=1), out)  # seeded
    assert not numpy.array_equal(op(batch, seed=2), out)


def test_a_generator_seed_is_drawn_from(batch):
    rng = numpy.random.default_rng(3)
    first, second = aug.random_flip_left_right(batch, seed=rng), aug.random_flip_left_right(batch, seed=rng)
    assert not numpy.array_equal(first, second)
    rng = numpy.random.default_rng(3)
    numpy.testing.assert_array_equal(aug.random_flip_left_right(batch, seed=rng), first)


# -- brightness and contrast ---------------------------------------------------------------------------------------
def test_brightness_shifts_each_image_by_one_bounded_value():
    images = numpy.random.default_rng(1).uniform(0.3, 0.7, (50, 4, 4, 3)).astype(numpy.float32)
    out = aug.random_brightness(images, 0.2, seed=0)
    shift = _flatten(out - images)
    numpy.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], axis=1), atol=1e-6)
    deltas = shift[:, 0]
    assert numpy.abs(deltas).max() <= 0.2 + 1e-6 and deltas.std() > 0.05  # per image, spread over the range
    assert deltas.min() < 0 < deltas.max()
    clipped = aug.random_brightness(numpy.full((20, 2, 2, 3), 0.95, numpy.float32), 0.5, seed=0)
    assert clipped.max() == 1.0 and clipped.min() >= 0.45 - 1e-6


def test_contrast_scales_around_each_channels_mean():
    images = numpy.random.default_rng(2).uniform(0.4, 0.6, (30, 5, 5, 3)).astype(numpy.float32)
    out = aug.random_contrast(images, 0.5, 1.5, seed=0)
    mean = images.mean(axis=(1, 2), keepdims=True)
    numpy.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), mean, atol=1e-6)
    factors = (out - mean)[:, 0, 0, 0] / (images - mean)[:, 0, 0, 0]
    numpy.testing.assert_allclose(out - mean, (images - mean) * factors.reshape(-1, 1, 1, 1), atol=1e-5)
    assert factors.min() >= 0.5 - 1e-4 and factors.max() <= 1.5 + 1e-4 and factors.std() > 0.1


# -- colour --------------------------------------------------------------------------------------------------------
def test_rgb_hsv_conversions_match_colorsys(batch):
    pixels = numpy.concatenate([batch.reshape(-1, 3), [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0],
                                                       [0, 1, 0], [0, 0, 1], [1, 1, 0]]]).astype(numpy.float32)
    hsv = aug.rgb_to_hsv(pixels)
    expected = numpy.array([colorsys.rgb_to_hsv(*pixel) for pixel in pixels.astype(float)])
    numpy.testing.assert_allclose(hsv, expected, atol=1e-6)
    numpy.testing.assert_allclose(aug.hsv_to_rgb(hsv), pixels, atol=1e-6)
    expected_rgb = numpy.array([colorsys.hsv_to_rgb(*triple) for triple in expected])
    numpy.testing.assert_allclose(aug.hsv_to_rgb(expected.astype(numpy.float32)), expected_rgb, atol=1e-6)
    assert hsv.dtype == numpy.float32


def _hue_distance(a, b):
    d = numpy.abs(a - b) % 1.0
    return numpy.minimum(d, 1 - d)


def test_hue_rotates_the_hue_and_keeps_saturation_and_value(batch):
    out = aug.random_hue(batch, 0.1, seed=0)
    before, after = aug.rgb_to_hsv(batch), aug.rgb_to_hsv(out)
    numpy.testing.assert_allclose(after[..., 1:], before[..., 1:], atol=1e-5)
    shift = (after[..., 0] - before[..., 0]) % 1.0
    shift = numpy.where(shift > 0.5, shift - 1, shift).reshape(len(batch), -1)
    numpy.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], axis=1), atol=1e-4)  # one per image
    assert numpy.abs(shift).max() <= 0.1 + 1e-4 and shift[:, 0].std() > 0.02
    grey = numpy.full((3, 2, 2, 3), 0.4, numpy.float32)
    numpy.testing.assert_allclose(aug.random_hue(grey, 0.5, seed=0), grey, atol=1e-6)  # no hue to turn


def test_saturation_scales_the_saturation_and_keeps_hue_and_value(batch):
    images = aug.hsv_to_rgb(numpy.stack(numpy.broadcast_arrays(
        numpy.float32(0.3), numpy.random.default_rng(1).uniform(0.2, 0.5, (40, 3, 3)).astype(numpy.float32),
        numpy.float32(0.8)), axis=-1))
    out = aug.random_saturation(images, 0.5, 1.5, seed=0)
    before, after = aug.rgb_to_hsv(images), aug.rgb_to_hsv(out)
    assert _hue_distance(after[..., 0], before[..., 0]).max() < 1e-4
    numpy.testing.assert_allclose(after[..., 2], before[..., 2], atol=1e-5)
    factors = _flatten(after[..., 1] / before[..., 1])
    numpy.testing.assert_allclose(factors, factors[:, :1].repeat(factors.shape[1], axis=1), atol=1e-4)
    assert factors.min() >= 0.5 - 1e-4 and factors.max() <= 1.5 + 1e-4
    desaturated = aug.random_saturation(images, 0.0, 0.0, seed=0)
    numpy.testing.assert_allclose(desaturated, desaturated[..., :1].repeat(3, axis=-1), atol=1e-6)  # grey


# -- the ops apply their draws a few images at a time: the same numbers as arithmetic on the whole batch ----------
def _whole_batch(name, batch, arguments, seed):
    """What each op computes, written plainly over the whole batch at once, with the same draws in the same order."""
    rng = numpy.random.default_rng(seed)
    n = len(batch)
    if name.startswith("random_flip"):
        chosen = numpy.flatnonzero(rng.random(n) < 0.5)
        out = batch.copy()
        out[chosen] = numpy.flip(batch[chosen], axis=2 if name.endswith("left_right") else 1)
        return out
    draws = rng.uniform(-arguments[0], arguments[0], n) if len(arguments) == 1 else rng.uniform(*arguments, n)
    draws = draws.astype(batch.dtype)
    if name == "random_brightness":
        return numpy.clip(batch + draws.reshape(-1, 1, 1, 1), 0, 1)
    if name == "random_contrast":
        _, height, width, channels = batch.shape
        weights = numpy.full((1, height * width), 1 / (height * width), batch.dtype)
        mean = (weights @ batch.reshape(n, -1, channels)).reshape(n, 1, 1, channels)
        factor = draws.reshape(-1, 1, 1, 1)
        return numpy.clip(batch * factor + mean * (1 - factor), 0, 1)
    hue, saturation, value, chroma = _plain_hsv(numpy.moveaxis(batch, -1, 0))
    if name == "random_hue":
        planes = _plain_rgb(hue + 6 * draws.reshape(-1, 1, 1), value, chroma)
    else:
        planes = _plain_rgb(hue, value, value * numpy.minimum(saturation * draws.reshape(-1, 1, 1), 1))
    return numpy.clip(numpy.moveaxis(planes, 0, -1), 0, 1)


def _plain_hsv(planes):
    """Hue in sextants, saturation, value and chroma of RGB planes, as plain whole-array expressions."""
    r, g, b = planes
    value = numpy.maximum(numpy.maximum(r, g), b)
    chroma = value - numpy.minimum(numpy.minimum(r, g), b)
    hue = numpy.where(value == r, g - b, numpy.where(value == g, b - r + 2 * chroma, r - g + 4 * chroma))
    hue = hue / (chroma + (chroma == 0))
    hue += 6 * (hue < 0)  # in place: float32 (hue + 6 * (hue < 0) alone would be float64)
    return hue, chroma / (value + (value == 0)), value, chroma


def _plain_rgb(sextant, value, chroma):
    base = sextant - 6 * numpy.floor(sextant / 6)
    ks = [base + n for n in (5, 3, 1)]
    for k in ks:
        k -= 6 * (k >= 6)
    return numpy.stack([value - chroma * numpy.clip(numpy.minimum(k, 4 - k), 0, 1) for k in ks])


def test_hsv_conversions_equal_plain_expressions_bit_for_bit(batch):
    pixels = numpy.concatenate([batch.reshape(-1, 3), [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0],
                                                       [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1],
                                                       [0.2, 0.7, 0.7], [0.7, 0.7, 0.2]]]).astype(numpy.float32)
    hue, saturation, value, _ = _plain_hsv(pixels.T)
    hsv = aug.rgb_to_hsv(pixels)
    numpy.testing.assert_array_equal(hsv, numpy.stack([hue / 6, saturation, value], axis=-1))
    expected = _plain_rgb(hsv[:, 0] * 6, hsv[:, 2], hsv[:, 2] * hsv[:, 1]).T
    numpy.testing.assert_array_equal(aug.hsv_to_rgb(hsv), expected)


_PER_IMAGE_OPS = [("random_flip_left_right", ()), ("random_flip_up_down", ()), ("random_brightness", (0.3,)),
                  ("random_contrast", (0.5, 1.5)), ("random_hue", (0.4,)), ("random_saturation", (0.2, 1.8))]


@pytest.mark.parametrize("name, arguments", _PER_IMAGE_OPS)
@pytest.mark.parametrize("sub_batch", [1, 3, 4, 64])
def test_applied_a_few_images_at_a_time_equals_the_whole_batch_bit_for_bit(name, arguments, sub_batch, monkeypatch):
    monkeypatch.setattr(aug, "_SUB_BATCH", sub_batch)
    batch = numpy.random.default_rng(7).random((13, 9, 11, 3), dtype=numpy.float32)  # 13: a short last run
    batch[0] = 0.5  # a grey image: hue and saturation 0
    for seed in (0, 1):
        out = getattr(aug, name)(batch, *arguments, seed=seed)
        expected = _whole_batch(name, batch, arguments, seed)
        assert out.dtype == numpy.float32 and out.flags.c_contiguous
        numpy.testing.assert_array_equal(out, expected)
    assert not numpy.array_equal(out, batch)  # the op did something


# -- geometry ------------------------------------------------------------------------------------------------------
def test_random_crop_takes_a_window_of_each_image():
    height, width = 10, 12
    coordinates = (numpy.arange(height).reshape(-1, 1) * 100 + numpy.arange(width)).astype(numpy.float32)
    images = numpy.broadcast_to(coordinates[None, :, :, None], (40, height, width, 2)).copy()
    out = aug.random_crop(images, (4, 5), seed=0)
    assert out.shape == (40, 4, 5, 2)
    tops, lefts = out[:, 0, 0, 0] // 100, out[:, 0, 0, 0] % 100
    for image, top, left in zip(out, tops.astype(int), lefts.astype(int)):
        numpy.testing.assert_array_equal(image, images[0, top:top + 4, left:left + 5])
    assert tops.max() <= 6 and lefts.max() <= 7 and len(set(zip(tops, lefts))) > 10
    numpy.testing.assert_array_equal(aug.central_crop(images, (4, 4))[0, ..., 0], coordinates[3:7, 4:8])
    with pytest.raises(ValueError, match=r"random_crop: the crop \(11, 5\) is larger than the images \(10, 12\)"):
        aug.random_crop(images, (11, 5))


def test_random_rotation_turns_about_the_centre_within_the_bound():
    size = 41
    images = numpy.zeros((30, size, size, 1), numpy.float32)
    images[:, 20, 35] = 1.0  # a dot 15 pixels right of the centre
    out = aug.random_rotation(images, 20, seed=0)
    ys, xs = numpy.mgrid[:size, :size] - 20
    weights = out[..., 0] / out[..., 0].sum(axis=(1, 2), keepdims=True)
    cy, cx = (weights * ys).sum(axis=(1, 2)), (weights * xs).sum(axis=(1, 2))
    numpy.testing.assert_allclose(numpy.hypot(cx, cy), 15, atol=0.6)  # the dot keeps its distance
    degrees = numpy.degrees(numpy.arctan2(-cy, cx))  # image rows run down: a positive angle turns it up
    assert numpy.abs(degrees).max() <= 20.5 and degrees.std() > 5
    same = numpy.random.default_rng(0).random((2, 7, 9, 3), dtype=numpy.float32)
    numpy.testing.assert_allclose(aug.random_rotation(same, 0, seed=0), same, atol=1e-6)
    flat = numpy.full((8, 9, 9, 3), 0.3, numpy.float32)
    numpy.testing.assert_allclose(aug.random_rotation(flat, 30, seed=0), flat, atol=1e-6)  # edges fill in
    filled = aug.random_rotation(flat, 45, seed=1, fill_mode="constant", fill_value=0.0)
    assert (filled[:, 0, 0] == 0).any()  # a corner from outside the picture


# -- the forms images come in ----------------------------------------------------------------------------------------
OPS = [
    (aug.random_flip_left_right, {}), (aug.random_flip_up_down, {}), (aug.random_brightness, {"max_delta": 0.2}),
    (aug.random_contrast, {"lower": 0.5, "upper": 1.5}), (aug.random_hue, {"max_delta": 0.1}),
    (aug.random_saturation, {"lower": 0.5, "upper": 1.5}), (aug.random_crop, {"size": (4, 3)}),
    (aug.random_rotation, {"max_degrees": 15}),
]


@pytest.mark.parametrize("op, arguments", OPS, ids=[op.__name__ for op, _ in OPS])
def test_tensors_single_images_and_bounds(batch, op, arguments):
    out = op(batch, seed=4, **arguments)
    assert out.dtype == numpy.float32 and out.min() >= 0 and out.max() <= 1
    with fl.training_mode(True):
        tensor = op(fl.tensor(batch), seed=4, **arguments)
    assert isinstance(tensor, fl.Tensor) and not tensor.requires_grad
    numpy.testing.assert_array_equal(tensor.numpy(), out)
    single = op(batch[0], seed=4, **arguments)
    assert single.shape == out.shape[1:]
    numpy.testing.assert_array_equal(single, op(batch[:1], seed=4, **arguments)[0])
    assert fl.image is aug and getattr(fl.io, op.__name__) is op  # fl.image.random_..., fl.io.random_...


@pytest.mark.parametrize("op, arguments", OPS, ids=[op.__name__ for op, _ in OPS])
def test_tensors_are_augmented_in_training_mode_only_as_dropout(batch, op, arguments):
    # A model_fn's augmentation must not touch evaluation, prediction or an export: outside training mode a
    # Tensor comes back as it was (random_crop: the central window, so shapes agree), with no random draw.
    images = fl.tensor(batch)
    fl.layers.set_random_seed(5)
    expected_next_draw = fl.layers.seeding.shuffle_rng().integers(2 ** 63)
    fl.layers.set_random_seed(5)
    out = op(images, **arguments)
    if op is aug.random_crop:
        numpy.testing.assert_array_equal(out.numpy(), aug.central_crop(batch, arguments["size"]))
    else:
        assert out is images
    assert fl.layers.seeding.shuffle_rng().integers(2 ** 63) == expected_next_draw  # the stream did not move
    with fl.training_mode(True):
        trained = op(images, seed=4, **arguments)
    numpy.testing.assert_array_equal(trained.numpy(), op(batch, seed=4, **arguments))
    assert not numpy.array_equal(trained.numpy(), out.numpy() if op is aug.random_crop else batch)
    # training= overrides the mode for a Tensor, and turns an array's augmentation off.
    numpy.testing.assert_array_equal(op(images, seed=4, training=True, **arguments).numpy(), trained.numpy())
    with fl.training_mode(True):
        assert op(images, seed=4, training=False, **arguments) is images or op is aug.random_crop
    assert op(batch, seed=4, training=False, **arguments) is batch or op is aug.random_crop
    with pytest.raises(ValueError, match="`seed`"):
        op(images, seed=-1, **arguments)  # checked in evaluation too


def test_unseeded_ops_follow_set_random_seed(batch):
    fl.layers.set_random_seed(11)
    first = aug.random_brightness(batch, 0.3)
    fl.layers.set_random_seed(11)
    numpy.testing.assert_array_equal(aug.random_brightness(batch, 0.3), first)


@pytest.mark.parametrize("call, message", [
    (lambda b: aug.random_brightness((b * 255).astype(numpy.uint8), 0.1), r"expected `images` as floats in \[0, 1\]"),
    (lambda b: aug.random_brightness(b[0, 0], 0.1), r"got an array of shape \(5, 3\)"),
    (lambda b: aug.random_brightness(b, -0.1), r"`max_delta`, expected a number >= 0.0. Received: max_delta=-0.1"),
    (lambda b: aug.random_contrast(b, 1.5, 0.5), r"expected lower <= upper; received lower=1.5, upper=0.5"),
    (lambda b: aug.random_hue(b[..., :1], 0.1), r"random_hue: expected RGB images \(3 channels\); got 1"),
    (lambda b: aug.random_flip_up_down(b, seed=-1), r"`seed`, expected a non-negative integer, a numpy"),
    (lambda b: aug.random_rotation(b, 10, fill_mode="wrap"), r"`fill_mode`, expected 'nearest' or 'constant'"),
])
def test_bad_arguments_are_named(batch, call, message):
    with pytest.raises(ValueError, match=message):
        call(batch)


def test_saturation_and_hue_fused_equal_the_two_ops_in_turn_to_float_rounding():
    """The pipeline's one trip through HSV for both ops draws what the two ops draw and gives their pixels."""
    batch = numpy.random.default_rng(8).random((8, 9, 7, 3), dtype=numpy.float32)
    fused = aug._saturation_and_hue(aug._saturation(0.3, 1.7), aug._hue(0.4))
    drawn = [numpy.asarray(v, numpy.float32) for v in fused.draw(numpy.random.default_rng(3), len(batch))]
    got = numpy.empty_like(batch)
    fused.apply(numpy, batch, got, *drawn)
    rng = numpy.random.default_rng(3)
    expected = aug.random_hue(aug.random_saturation(batch, 0.3, 1.7, seed=rng), 0.4, seed=rng)
    numpy.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert not numpy.allclose(got, batch, atol=1e-3)  # it did change the colours
