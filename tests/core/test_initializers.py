"""Initializers: shapes and dtypes, seeding, Keras statistics, truncation, fans, get/config."""
import json
import math

import numpy
import pytest
from numpy.testing import assert_array_equal

from flowlearn.core import initializers as init

ALL = [
    init.Zeros(), init.Ones(), init.Constant(0.3), init.RandomUniform(), init.RandomNormal(),
    init.TruncatedNormal(), init.VarianceScaling(2.0, "fan_out", "untruncated_normal"), init.GlorotUniform(),
    init.GlorotNormal(), init.HeUniform(), init.HeNormal(), init.LecunNormal(), init.LecunUniform(),
]
RANDOM = [i for i in ALL if not isinstance(i, init.Constant)]


@pytest.mark.parametrize("initializer", ALL, ids=repr)
@pytest.mark.parametrize("shape", [(7,), (5, 3), (3, 3, 2, 4), ()])
def test_shape_and_default_dtype(initializer, shape):
    values = initializer(shape, rng=0)
    assert isinstance(values, numpy.ndarray)
    assert values.shape == shape and values.dtype == numpy.float32


@pytest.mark.parametrize("initializer", RANDOM, ids=repr)
@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_float_dtypes(initializer, dtype):
    assert initializer((4, 5), dtype=dtype, rng=0).dtype == numpy.dtype(dtype)


@pytest.mark.parametrize("initializer", RANDOM, ids=repr)
def test_seeded_reproducibility(initializer):
    assert_array_equal(initializer((20, 10), rng=7), initializer((20, 10), rng=7))
    assert not numpy.array_equal(initializer((20, 10), rng=7), initializer((20, 10), rng=8))
    generator = numpy.random.default_rng(3)
    first, second = initializer((20, 10), rng=generator), initializer((20, 10), rng=generator)
    assert not numpy.array_equal(first, second)  # the generator advances
    assert_array_equal(first, initializer((20, 10), rng=numpy.random.default_rng(3)))
    assert initializer((20, 10)).shape == (20, 10)  # rng=None: a fresh generator


def test_constants():
    assert_array_equal(init.Zeros()((2, 2)), numpy.zeros((2, 2)))
    assert_array_equal(init.Ones()((3,), dtype="int32"), numpy.ones(3, numpy.int32))
    assert init.Ones()((3,), dtype="int32").dtype == numpy.int32
    assert_array_equal(init.Constant(-2.5)((2,)), [-2.5, -2.5])


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((6,), (6, 6)), ((784, 256), (784, 256)),
    ((3, 3, 16, 32), (144, 288)), ((5, 1, 8), (5, 40)), ((2, 3, 3, 4, 5), (72, 90)),
])
def test_compute_fans(shape, fans):
    assert init.compute_fans(shape) == fans


SHAPE = (120, 80, 3, 4)  # conv-like: fan_in = 9600 * 3, large enough for tight statistics
FAN_IN, FAN_OUT = init.compute_fans(SHAPE)


@pytest.mark.parametrize("initializer, std, limit", [
    # uniform: limit sqrt(3 * scale / fan), std limit / sqrt(3); truncated normal: std sqrt(scale / fan).
    (init.GlorotUniform(), math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (init.HeUniform(), math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    (init.LecunUniform(), math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN)),
    (init.GlorotNormal(), math.sqrt(2 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(2 / (FAN_IN + FAN_OUT)) / 0.8796),
    (init.HeNormal(), math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / 0.8796),
    (init.LecunNormal(), math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / 0.8796),
    (init.VarianceScaling(3.0, "fan_out", "untruncated_normal"), math.sqrt(3 / FAN_OUT), None),
], ids=repr)
def test_variance_scaling_statistics(initializer, std, limit):
    values = initializer(SHAPE, rng=0).astype(numpy.float64)
    assert abs(values.mean()) < 0.01 * std
    assert values.std() == pytest.approx(std, rel=0.01)
    if limit is not None:
        assert numpy.abs(values).max() <= limit * (1 + 1e-6)
        assert numpy.abs(values).max() > 0.95 * limit  # the whole range is used


def test_random_uniform_normal_and_truncated_statistics():
    values = init.RandomUniform(-0.5, 1.5)((200_000,), rng=0)
    assert values.min() >= -0.5 and values.max() <= 1.5
    assert values.mean() == pytest.approx(0.5, abs=0.01)
    values = init.RandomNormal(mean=1.0, stddev=2.0)((200_000,), rng=0)
    assert values.mean() == pytest.approx(1.0, abs=0.02) and values.std() == pytest.approx(2.0, rel=0.01)
    values = init.TruncatedNormal(mean=-1.0, stddev=0.5)((200_000,), rng=0)
    assert numpy.abs(values + 1.0).max() <= 1.0 + 1e-6  # re-drawn beyond 2 stddev
    assert numpy.abs(values + 1.0).max() > 0.99
    assert values.std() == pytest.approx(0.8796 * 0.5, rel=0.01)


@pytest.mark.parametrize("identifier, cls", [
    ("zeros", init.Zeros), ("ones", init.Ones), ("constant", init.Constant), ("random_uniform", init.RandomUniform),
    ("random_normal", init.RandomNormal), ("truncated_normal", init.TruncatedNormal),
    ("glorot_uniform", init.GlorotUniform), ("glorot_normal", init.GlorotNormal), ("he_uniform", init.HeUniform),
    ("he_normal", init.HeNormal), ("lecun_normal", init.LecunNormal), ("GlorotUniform", init.GlorotUniform),
    ("HE_NORMAL", init.HeNormal), ("uniform", init.RandomUniform), (init.HeUniform, init.HeUniform),
])
def test_get(identifier, cls):
    assert type(init.get(identifier)) is cls


def test_get_instances_callables_dicts_and_errors():
    instance = init.RandomNormal(stddev=0.1)
    assert init.get(instance) is instance
    assert init.get(None) is None

    def custom(shape, dtype="float32", rng=None):
        return numpy.full(shape, 7.0, dtype)

    assert init.get(custom) is custom
    restored = init.get({"class_name": "RandomUniform", "config": {"minval": 0.0, "maxval": 2.0}})
    assert (restored.minval, restored.maxval) == (0.0, 2.0)
    with pytest.raises(ValueError, match=r"Unknown initializer 'glorot'.*'glorot_normal'.*'he_normal'.*'zeros'"):
        init.get("glorot")
    with pytest.raises(TypeError, match="Could not interpret initializer 3"):
        init.get(3)


@pytest.mark.parametrize("initializer", ALL, ids=repr)
def test_config_round_trip(initializer):
    config = json.loads(json.dumps(init.serialize(initializer)))
    restored = init.get(config)
    assert type(restored) is type(initializer)
    assert restored.get_config() == initializer.get_config()
    assert_array_equal(restored((6, 4), rng=1), initializer((6, 4), rng=1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="floating-point dtype.*int32"):
        init.GlorotUniform()((3, 3), dtype="int32")
    with pytest.raises(ValueError, match="non-negative sizes"):
        init.Zeros()((3, -1))
    with pytest.raises(TypeError, match="numpy.random.Generator, an int seed or None"):
        init.HeNormal()((3,), rng="seed")
    with pytest.raises(ValueError, match=r"`mode`.*'fan_avg'.*mode='fan_mean'"):
        init.VarianceScaling(mode="fan_mean")
    with pytest.raises(ValueError, match=r"`distribution`.*distribution='normal'"):
        init.VarianceScaling(distribution="normal")
    with pytest.raises(ValueError, match=r"`scale` > 0"):
        init.VarianceScaling(scale=0.0)
    with pytest.raises(ValueError, match=r"`stddev` >= 0"):
        init.RandomNormal(stddev=-1.0)
    with pytest.raises(ValueError, match="minval <= maxval"):
        init.RandomUniform(1.0, 0.0)


def test_serialize_none_custom_and_plain_callables():
    class Halves(init.Initializer):
        def __call__(self, shape, dtype="float32", rng=None):
            return numpy.full(shape, 0.5, dtype)

    assert init.serialize(None) is None
    assert type(init.get(init.serialize(Halves()))) is Halves
    with pytest.raises(TypeError, match="only Initializer instances have a config"):
        init.serialize(lambda shape, dtype="float32", rng=None: numpy.zeros(shape, dtype))
