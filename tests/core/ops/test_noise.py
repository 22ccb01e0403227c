import json

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import Graph, ops
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.ops import noise
from flowlearn.core.primitive import apply


def test_identity_outside_training(device, rng):
    x = fl.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device)
    assert ops.dropout(x, 0.5) is x  # training=None and not in training mode
    assert ops.dropout(x, 0.5, training=False) is x
    assert ops.dropout(x, 0.0, training=True) is x
    with fl.training_mode(False):
        assert ops.dropout(x, 0.5, training=None) is x
    graph = fl.trace(lambda t: ops.dropout(t, 0.5) * 2, x)
    assert [n["op"] for n in graph.nodes] == ["mul"]  # records nothing


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_training_keeps_the_mean_and_scales_survivors(rate, device):
    x = fl.tensor(numpy.full((400, 500), 3.0), device=device)
    with fl.training_mode():
        y = ops.dropout(x, rate, seed=1).numpy()
    survivors = y != 0
    numpy.testing.assert_allclose(y[survivors], 3.0 / (1 - rate), rtol=1e-6)
    assert abs(survivors.mean() - (1 - rate)) < 0.01
    assert abs(y.mean() - 3.0) < 0.05


def test_gradient_is_the_scaled_mask(device, rng):
    x = fl.tensor(rng.uniform(1, 2, (50, 40)), requires_grad=True, device=device)
    y = ops.dropout(x, 0.3, training=True)
    upstream = rng.standard_normal((50, 40))
    y.backward(fl.tensor(upstream, device=device))
    scaled_mask = (y.numpy() != 0) / numpy.float32(0.7)
    numpy.testing.assert_allclose(fl.backend.to_numpy(x.grad), upstream * scaled_mask, rtol=1e-6)
    assert x.grad.dtype == numpy.float32 and y.dtype == numpy.float32


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_keeps_dtype_and_scales_exactly(dtype, device):
    x = fl.tensor(numpy.ones(1000), dtype=dtype, device=device)
    y = ops.dropout(x, 0.3, training=True, seed=4)
    assert y.dtype == dtype
    values = numpy.unique(y.numpy())
    numpy.testing.assert_array_equal(values, numpy.array([0, 1 / 0.7], dtype=dtype))


def test_gradient_check_in_float64(device, rng):
    # The mask is fixed by the seed attr, so the op is linear and finite differences see it.
    x = rng.standard_normal((4, 5))
    check_gradients(lambda t: apply(noise.Dropout, (t,), rate=0.4, seed=11), [x], device=device)


def test_same_generator_state_gives_the_same_mask(device):
    x = fl.tensor(numpy.ones((30, 30)), device=device)
    first = ops.dropout(x, 0.5, training=True, rng=numpy.random.default_rng(7)).numpy()
    second = ops.dropout(x, 0.5, training=True, rng=numpy.random.default_rng(7)).numpy()
    other = ops.dropout(x, 0.5, training=True, rng=numpy.random.default_rng(8)).numpy()
    numpy.testing.assert_array_equal(first, second)
    assert (first != other).any()
    # the primitive's seed attr alone fixes the mask
    a, b = (apply(noise.Dropout, (x,), rate=0.5, seed=123).numpy() for _ in range(2))
    numpy.testing.assert_array_equal(a, b)


def test_seed_gives_a_repeatable_sequence_of_different_masks(device, monkeypatch):
    x = fl.tensor(numpy.ones((30, 30)), device=device)

    def sequence():
        monkeypatch.setattr(noise, "_seed_counters", {})  # as in a fresh process
        return [ops.dropout(x, 0.5, training=True, seed=42).numpy() for _ in range(3)]

    first, second = sequence(), sequence()
    for a, b in zip(first, second):
        numpy.testing.assert_array_equal(a, b)
    assert (first[0] != first[1]).any() and (first[1] != first[2]).any()
    unseeded = [ops.dropout(x, 0.5, training=True).numpy() for _ in range(2)]
    assert (unseeded[0] != unseeded[1]).any()


def test_traced_dropout_replays_its_mask_from_json(rng):
    x = rng.standard_normal((6, 8)).astype(numpy.float32)
    graph = fl.trace(lambda t: ops.dropout(t, 0.5, training=True, seed=3), x)
    spec = json.loads(json.dumps(graph.to_dict()))
    (node,) = spec["nodes"]
    assert node["op"] == "dropout" and isinstance(node["attrs"]["seed"], int) and node["attrs"]["rate"] == 0.5
    restored = Graph.from_dict(spec, graph.arrays)
    expected = apply(noise.Dropout, (fl.tensor(x),), rate=0.5, seed=node["attrs"]["seed"]).numpy()
    numpy.testing.assert_array_equal(restored.run(x), expected)
    numpy.testing.assert_array_equal(restored.run(x), graph.run(x))


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_rate_must_be_in_unit_interval(rate, device):
    x = fl.tensor(numpy.ones(3), device=device)
    with pytest.raises(ValueError, match=r"dropout: expected `rate` in \[0, 1\); got rate="):
        ops.dropout(x, rate, training=True)
    with pytest.raises(ValueError, match="expected `rate`"):
        ops.dropout(x, rate, training=False)  # checked even when it would be the identity


def test_bad_seed_and_generator(device):
    x = fl.tensor(numpy.ones(3), device=device)
    with pytest.raises(ValueError, match="expected `seed` to be a non-negative integer or None; got seed=-1"):
        ops.dropout(x, 0.5, training=True, seed=-1)
    with pytest.raises(TypeError, match="expected `rng` to be a numpy.random.Generator; got int"):
        ops.dropout(x, 0.5, training=True, rng=3)
    with pytest.raises(ValueError, match="at most one of `seed` and `rng`"):
        ops.dropout(x, 0.5, training=True, seed=1, rng=numpy.random.default_rng())
    with pytest.raises(TypeError, match="dropout: expected a float tensor; got dtype int64"):
        ops.dropout(fl.tensor([1, 2], device=device), 0.5, training=True)
