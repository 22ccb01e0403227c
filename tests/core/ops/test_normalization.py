import json

import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core import Graph, ops
from flowlearn.core.gradient_check import check_gradients

# (input shape, channel axis): Dense (N, C), NHWC images, and channels-first for a middle axis.
LAYOUTS = [((6, 4), -1), ((2, 3, 3, 4), -1), ((2, 4, 3, 2), 1)]


def _layout_id(layout):
    shape, axis = layout
    return f"{'x'.join(map(str, shape))}-axis{axis}"


def _channels(shape, axis):
    return shape[axis]


def _biased_moments(x, axis):
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_training_gradients_match_finite_differences(layout, device, rng):
    shape, axis = layout
    c = _channels(shape, axis)
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    check_gradients(lambda x, g, b: ops.batch_norm(x, g, b, training=True, axis=axis), [x, gamma, beta],
                    device=device)


@pytest.mark.parametrize("scale,center", [(False, True), (True, False), (False, False)])
def test_training_gradients_without_scale_or_center(scale, center, device, rng):
    x = rng.standard_normal((5, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)

    def fn(x, g, b):
        return ops.batch_norm(x, g if scale else None, b if center else None, training=True, epsilon=1e-2)

    check_gradients(fn, [x, gamma, beta], wrt=[0] + [1] * scale + [2] * center, device=device)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_inference_gradients_match_finite_differences(layout, device, rng):
    shape, axis = layout
    c = _channels(shape, axis)
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    check_gradients(lambda x, g, b, m, v: ops.batch_norm(x, g, b, m, v, training=False, axis=axis),
                    [x, gamma, beta, mean, var], device=device)


def _to_torch_layout(array, axis):
    """Channels to axis 1, where torch's batch_norm wants them."""
    return numpy.moveaxis(array, axis, 1)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_training_matches_pytorch_and_keras_moving_average(layout, device, rng):
    shape, axis = layout
    c = _channels(shape, axis)
    x = (rng.standard_normal(shape) * 3 + 2).astype(numpy.float32)
    gamma = rng.uniform(0.5, 1.5, c).astype(numpy.float32)
    beta = rng.standard_normal(c).astype(numpy.float32)
    mean0 = rng.standard_normal(c).astype(numpy.float32)
    var0 = rng.uniform(0.5, 2.0, c).astype(numpy.float32)
    upstream = rng.standard_normal(shape).astype(numpy.float32)
    momentum, epsilon = 0.9, 1e-3

    xs = [fl.tensor(a, requires_grad=True, device=device) for a in (x, gamma, beta)]
    # copies: fl.tensor shares memory with a numpy array, and training updates the statistics in place
    moving_mean, moving_var = fl.tensor(mean0.copy(), device=device), fl.tensor(var0.copy(), device=device)
    y = ops.batch_norm(*xs, moving_mean, moving_var, training=True, momentum=momentum, epsilon=epsilon, axis=axis)
    y.backward(fl.tensor(upstream, device=device))

    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (_to_torch_layout(x, axis), gamma, beta))
    running_mean, running_var = torch.tensor(mean0), torch.tensor(var0)
    # torch's momentum weighs the new batch: 1 - Keras's momentum.
    ty = torch.nn.functional.batch_norm(tx, running_mean, running_var, tg, tb, training=True,
                                        momentum=1 - momentum, eps=epsilon)
    ty.backward(torch.tensor(_to_torch_layout(upstream, axis)))

    def close(ours, theirs, **tol):
        numpy.testing.assert_allclose(fl.backend.to_numpy(getattr(ours, "data", ours)), theirs,
                                      **{"rtol": 1e-4, "atol": 1e-5, **tol})

    close(y, numpy.moveaxis(ty.detach().numpy(), 1, axis))
    close(xs[0].grad, numpy.moveaxis(tx.grad.numpy(), 1, axis), atol=1e-4)
    close(xs[1].grad, tg.grad.numpy(), atol=1e-4)
    close(xs[2].grad, tb.grad.numpy(), atol=1e-4)
    close(moving_mean, running_mean.numpy())

    # The moving variance follows Keras: the biased batch variance. torch's running_var uses the unbiased
    # one (count / (count - 1) times larger), so it differs by exactly (1 - momentum) times the gap.
    batch_mean, batch_var = _biased_moments(x.astype(numpy.float64), axis)
    keras_rule = var0 * momentum + batch_var * (1 - momentum)
    close(moving_var, keras_rule)
    count = x.size // c
    close(moving_var, running_var.numpy() - (1 - momentum) * batch_var / (count - 1))
    assert moving_mean.dtype == moving_var.dtype == numpy.float32


@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_inference_matches_pytorch(layout, device, rng):
    shape, axis = layout
    c = _channels(shape, axis)
    x, upstream = (rng.standard_normal(shape).astype(numpy.float32) for _ in range(2))
    gamma, mean = rng.uniform(0.5, 1.5, c).astype(numpy.float32), rng.standard_normal(c).astype(numpy.float32)
    beta, var = rng.standard_normal(c).astype(numpy.float32), rng.uniform(0.5, 2.0, c).astype(numpy.float32)

    xs = [fl.tensor(a, requires_grad=True, device=device) for a in (x, gamma, beta)]
    moving = [fl.tensor(a.copy(), device=device) for a in (mean, var)]
    y = ops.batch_norm(*xs, *moving, axis=axis)
    y.backward(fl.tensor(upstream, device=device))

    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (_to_torch_layout(x, axis), gamma, beta))
    ty = torch.nn.functional.batch_norm(tx, torch.tensor(mean), torch.tensor(var), tg, tb, training=False,
                                        eps=1e-3)
    ty.backward(torch.tensor(_to_torch_layout(upstream, axis)))

    numpy.testing.assert_allclose(y.numpy(), numpy.moveaxis(ty.detach().numpy(), 1, axis), rtol=1e-4, atol=1e-5)
    for ours, theirs in [(xs[0].grad, numpy.moveaxis(tx.grad.numpy(), 1, axis)), (xs[1].grad, tg.grad.numpy()),
                         (xs[2].grad, tb.grad.numpy())]:
        numpy.testing.assert_allclose(fl.backend.to_numpy(ours), theirs, rtol=1e-4, atol=1e-4)
    # inference leaves the moving statistics alone
    numpy.testing.assert_array_equal(moving[0].numpy(), mean)
    numpy.testing.assert_array_equal(moving[1].numpy(), var)


def _state(rng, c, device):
    return fl.tensor(numpy.zeros(c), device=device), fl.tensor(numpy.ones(c), device=device)


def test_moving_statistics_update_under_no_grad(device, rng):
    x = rng.standard_normal((8, 3)).astype(numpy.float32)
    recorded_state, quiet_state = _state(rng, 3, device), _state(rng, 3, device)
    gamma = fl.tensor(numpy.ones(3), requires_grad=True, device=device)
    recorded = ops.batch_norm(fl.tensor(x, device=device), gamma, None, *recorded_state, training=True)
    with fl.no_grad():
        quiet = ops.batch_norm(fl.tensor(x, device=device), gamma, None, *quiet_state, training=True)
    assert not quiet.requires_grad and recorded.requires_grad
    numpy.testing.assert_array_equal(quiet.numpy(), recorded.numpy())
    mean, var = _biased_moments(x, -1)
    for state in (recorded_state, quiet_state):
        numpy.testing.assert_allclose(state[0].numpy(), 0.01 * mean, rtol=1e-5)
        numpy.testing.assert_allclose(state[1].numpy(), 0.99 + 0.01 * var, rtol=1e-5)


def test_traced_training_graph_normalises_each_replayed_batch(rng):
    moving_mean, moving_var = _state(rng, 4, "cpu")
    gamma = fl.tensor(rng.uniform(0.5, 1.5, 4), requires_grad=True, name="gamma")

    def model(x):
        return ops.batch_norm(x, gamma, None, moving_mean, moving_var, training=True)

    traced_batch = rng.standard_normal((5, 4)).astype(numpy.float32)
    graph = fl.trace(model, traced_batch)
    numpy.testing.assert_allclose(moving_mean.numpy(), 0.01 * traced_batch.mean(axis=0), rtol=1e-5)
    assert [n["op"] for n in graph.nodes] == ["batch_moments", "batch_norm_train"]

    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    other = (rng.standard_normal((7, 4)) * 5 + 3).astype(numpy.float32)
    with fl.no_grad():
        expected = ops.batch_norm(fl.tensor(other), gamma, None, training=True).numpy()
    numpy.testing.assert_allclose(restored.run(other), expected, rtol=1e-6)


def test_training_flag_none_reads_training_mode(device, rng):
    x = fl.tensor(rng.standard_normal((4, 2)) + 5, device=device)
    moving_mean, moving_var = _state(rng, 2, device)
    inference = ops.batch_norm(x, None, None, moving_mean, moving_var, training=None)
    numpy.testing.assert_allclose(inference.numpy(), x.numpy() / numpy.sqrt(1 + 1e-3), rtol=1e-6)
    numpy.testing.assert_array_equal(moving_mean.numpy(), [0.0, 0.0])
    with fl.training_mode():
        trained = ops.batch_norm(x, None, None, moving_mean, moving_var, training=None)
    numpy.testing.assert_allclose(trained.numpy().mean(axis=0), 0.0, atol=1e-5)
    assert (moving_mean.numpy() > 0.04).all()


def test_keeps_dtypes(device, rng):
    x = fl.tensor(rng.standard_normal((4, 3)), requires_grad=True, device=device)  # float32
    gamma = fl.tensor(numpy.ones(3), dtype="float64", requires_grad=True, device=device)
    moving_mean = fl.tensor(numpy.zeros(3), dtype="float64", device=device)
    moving_var = fl.tensor(numpy.ones(3), dtype="float64", device=device)
    for training in (True, False):
        y = ops.batch_norm(x, gamma, None, moving_mean, moving_var, training=training)
        y.backward(fl.tensor(numpy.ones((4, 3)), device=device))
        assert y.dtype == numpy.float32 and x.grad.dtype == numpy.float32 and gamma.grad.dtype == numpy.float64
    assert moving_mean.dtype == moving_var.dtype == numpy.float64


def test_bad_arguments_name_the_problem(device):
    x = fl.tensor(numpy.ones((4, 3)), device=device)
    mean, var = fl.tensor(numpy.zeros(3), device=device), fl.tensor(numpy.ones(3), device=device)
    with pytest.raises(ValueError, match=r"expected `gamma` of shape \(3,\) .*; got shape \(4,\)"):
        ops.batch_norm(x, fl.tensor(numpy.ones(4), device=device), None, training=True)
    with pytest.raises(ValueError, match=r"inference \(training=False\) normalises with `moving_mean`"):
        ops.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"expected `momentum` in \[0, 1\]; got momentum=1.5"):
        ops.batch_norm(x, None, None, mean, var, training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"expected `epsilon` in \[0, inf\]; got epsilon=-1"):
        ops.batch_norm(x, None, None, mean, var, epsilon=-1)
    with pytest.raises(ValueError, match="both `moving_mean` and `moving_variance`, or neither"):
        ops.batch_norm(x, None, None, mean, None, training=True)
    with pytest.raises(TypeError, match="expected `moving_mean` to be a Tensor .*; got ndarray"):
        ops.batch_norm(x, None, None, numpy.zeros(3), var, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: expected `axis` in \[-2, 2\) .*; got axis=2"):
        ops.batch_norm(x, None, None, mean, var, axis=2)
    with pytest.raises(TypeError, match="batch_norm: expected a float tensor; got dtype int64"):
        ops.batch_norm(fl.tensor(numpy.ones((2, 3), dtype=int), device=device), None, None, mean, var)
    numpy.testing.assert_array_equal(mean.numpy(), 0.0)  # nothing was updated by the failed calls
