import json
import warnings

import numpy
import pytest
import torch

import flowlearn as fl
from flowlearn.core import Graph, losses
from flowlearn.core.gradient_check import check_gradients

REDUCTIONS = ["mean", "sum", "none"]


# -- inputs for every loss ----------------------------------------------------------------------
def _soft_rows(rng, shape):
    return rng.dirichlet(numpy.ones(shape[-1]), size=shape[:-1])


def _elementwise_inputs(rng, shape, labels="normal", predictions="normal"):
    draw = {
        "normal": lambda: 2 * rng.standard_normal(shape),
        "unit": lambda: rng.uniform(0, 1, shape),
        "probs": lambda: rng.uniform(0.05, 0.95, shape),
    }
    return draw[labels](), draw[predictions]()


# name -> (function, make(rng, shape) -> (labels, predictions), shapes, extra kwargs)
CASES = {
    "mean_squared_error": (losses.mean_squared_error, _elementwise_inputs, [(5,), (4, 3), (2, 3, 2)], {}),
    "mean_absolute_error": (losses.mean_absolute_error, _elementwise_inputs, [(5,), (4, 3), (2, 3, 2)], {}),
    "huber": (losses.huber, _elementwise_inputs, [(5,), (4, 3), (2, 3, 2)], {"delta": 1.5}),
    "sigmoid_cross_entropy": (
        losses.sigmoid_cross_entropy, lambda rng, s: _elementwise_inputs(rng, s, labels="unit"),
        [(5,), (4, 3), (2, 3, 2)], {},
    ),
    "binary_crossentropy": (
        losses.binary_crossentropy, lambda rng, s: _elementwise_inputs(rng, s, labels="unit", predictions="probs"),
        [(5,), (4, 3)], {},
    ),
    "softmax_cross_entropy": (
        losses.softmax_cross_entropy, lambda rng, s: (_soft_rows(rng, s), 3 * rng.standard_normal(s)),
        [(4, 3), (2, 3, 4)], {},
    ),
    "sparse_softmax_cross_entropy": (
        losses.sparse_softmax_cross_entropy,
        lambda rng, s: (rng.integers(0, s[-1], s[:-1]), 3 * rng.standard_normal(s)),
        [(4, 3), (2, 3, 4)], {},
    ),
    "categorical_crossentropy": (  # unnormalised rows: the renormalisation is differentiated too
        losses.categorical_crossentropy, lambda rng, s: (_soft_rows(rng, s), rng.uniform(0.05, 0.95, s)),
        [(4, 3), (2, 3, 4)], {},
    ),
    "sparse_categorical_crossentropy": (
        losses.sparse_categorical_crossentropy,
        lambda rng, s: (rng.integers(0, s[-1], s[:-1]), rng.uniform(0.05, 0.95, s)),
        [(4, 3), (2, 3, 4)], {},
    ),
}
GRAD_CASES = [(name, shape) for name, case in CASES.items() for shape in case[2]]
REGRESSION = ["mean_squared_error", "mean_absolute_error", "huber"]


def _call(name, weighted, reduction):
    function, _, _, kwargs = CASES[name]

    def fn(labels, predictions, *weights):
        return function(labels, predictions, weights=weights[0] if weighted else None, reduction=reduction,
                        **kwargs)

    return fn


# -- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,shape", GRAD_CASES)
def test_gradient_matches_finite_differences(name, shape, reduction, weighted, device, rng):
    labels, predictions = CASES[name][1](rng, shape)
    inputs = [labels, predictions] + ([rng.uniform(0.5, 2.0, shape[0])] if weighted else [])
    check_gradients(_call(name, weighted, reduction), inputs, wrt=[1], device=device)


@pytest.mark.parametrize("name", REGRESSION)
@pytest.mark.parametrize("label_shape,prediction_shape", [((4, 3), (4, 3)), ((4,), (4, 1)), ((4, 1), (4,))])
def test_regression_losses_also_differentiate_labels(name, label_shape, prediction_shape, device, rng):
    labels = 2 * rng.standard_normal(label_shape)
    predictions = 2 * rng.standard_normal(prediction_shape)
    weights = rng.uniform(0.5, 2.0, 4)
    check_gradients(_call(name, True, "mean"), [labels, predictions, weights], wrt=[0, 1], device=device)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_cross_entropy", "categorical_crossentropy"])
def test_cross_entropy_labels_get_no_gradient(name, device, rng):
    labels, predictions = CASES[name][1](rng, (4, 3))
    y = fl.tensor(labels, requires_grad=True, device=device)
    x = fl.tensor(predictions, requires_grad=True, device=device)
    CASES[name][0](y, x).backward()
    assert y.grad is None
    assert x.grad is not None and x.grad.shape == (4, 3)


# -- values and conventions ---------------------------------------------------------------------
def _numpy(tensor):
    return fl.backend.to_numpy(tensor.data)


def test_reductions_follow_the_sum_over_batch_size_convention(device, rng):
    labels, predictions = rng.standard_normal((2, 4, 3, 2))
    weights = rng.uniform(0.5, 2.0, 4)
    per_sample = ((predictions - labels) ** 2).mean(axis=(1, 2))
    y, p = fl.tensor(labels, device=device), fl.tensor(predictions, device=device)

    def run(**kw):
        return _numpy(losses.mean_squared_error(y, p, **kw))

    numpy.testing.assert_allclose(run(reduction="none"), per_sample, rtol=1e-5)
    numpy.testing.assert_allclose(run(), per_sample.mean(), rtol=1e-5)
    numpy.testing.assert_allclose(run(reduction="sum"), per_sample.sum(), rtol=1e-5)
    numpy.testing.assert_allclose(run(weights=weights, reduction="none"), weights * per_sample, rtol=1e-5)
    numpy.testing.assert_allclose(run(weights=weights), (weights * per_sample).sum() / 4, rtol=1e-5)
    numpy.testing.assert_allclose(run(weights=weights, reduction="sum"), (weights * per_sample).sum(), rtol=1e-5)
    numpy.testing.assert_allclose(run(reduction="sum_over_batch_size"), run(), rtol=1e-6)
    assert run(reduction="none").shape == (4,) and run().shape == ()


def test_weights_may_be_scalar_column_or_integer(device, rng):
    labels, logits = CASES["sparse_softmax_cross_entropy"][1](rng, (5, 3))
    x = fl.tensor(logits, device=device)
    base = _numpy(losses.sparse_softmax_cross_entropy(labels, x, reduction="none"))
    w = numpy.arange(1, 6)
    for weights in (w, w.reshape(5, 1), fl.tensor(w.astype("float64"), device=device)):
        got = losses.sparse_softmax_cross_entropy(labels, x, weights=weights, reduction="none")
        assert got.dtype == numpy.float32
        numpy.testing.assert_allclose(_numpy(got), base * w, rtol=1e-6)
    numpy.testing.assert_allclose(
        _numpy(losses.sparse_softmax_cross_entropy(labels, x, weights=2.0)), 2 * base.mean(), rtol=1e-6
    )


@pytest.mark.parametrize("name", list(CASES))
def test_dtype_is_kept(name, device, rng):
    labels, predictions = CASES[name][1](rng, (4, 3))
    for dtype in ("float32", "float64"):
        x = fl.tensor(predictions, dtype=dtype, requires_grad=True, device=device)
        out = CASES[name][0](labels, x, weights=rng.uniform(size=4))  # float64 labels and weights
        out.backward()
        assert out.dtype == dtype and x.grad.dtype == dtype


def test_labels_and_predictions_may_differ_by_a_trailing_axis_of_one(device, rng):
    labels = rng.integers(0, 2, 6)
    logits = fl.tensor(rng.standard_normal((6, 1)), device=device)
    expected = losses.sigmoid_cross_entropy(labels.reshape(6, 1), logits, reduction="none")
    got = losses.sigmoid_cross_entropy(labels, logits, reduction="none")
    numpy.testing.assert_allclose(_numpy(got), _numpy(expected))
    sparse = losses.sparse_softmax_cross_entropy(labels.reshape(6, 1), fl.tensor(rng.standard_normal((6, 2))))
    assert numpy.isfinite(sparse.item())


def test_float_class_labels_with_integer_values_are_accepted(device, rng):
    labels, logits = CASES["sparse_softmax_cross_entropy"][1](rng, (5, 4))
    x = fl.tensor(logits, device=device)
    numpy.testing.assert_array_equal(
        _numpy(losses.sparse_softmax_cross_entropy(labels.astype("float32"), x)),
        _numpy(losses.sparse_softmax_cross_entropy(labels, x)),
    )


def test_sparse_and_one_hot_forms_agree(device, rng):
    labels = rng.integers(0, 4, 6)
    one_hot = numpy.eye(4)[labels]
    logits = fl.tensor(rng.standard_normal((6, 4)), device=device)
    probs = fl.tensor(rng.uniform(0.05, 1, (6, 4)), device=device)
    numpy.testing.assert_allclose(_numpy(losses.sparse_softmax_cross_entropy(labels, logits)),
                                  _numpy(losses.softmax_cross_entropy(one_hot, logits)), rtol=1e-6)
    numpy.testing.assert_allclose(_numpy(losses.sparse_categorical_crossentropy(labels, probs)),
                                  _numpy(losses.categorical_crossentropy(one_hot, probs)), rtol=1e-6)


def test_empty_batch_gives_zero_mean(device):
    out = losses.mean_squared_error(numpy.zeros((0, 3)), fl.tensor(numpy.zeros((0, 3)), device=device))
    assert out.item() == 0.0


# -- PyTorch parity (float32) -------------------------------------------------------------------
def _torch_cases():
    F = torch.nn.functional

    def per_sample(loss):  # torch "none" losses averaged over the non-batch axes
        return loss.reshape(loss.shape[0], -1).mean(dim=1)

    return torch, {
        "mse": (losses.mean_squared_error, lambda y, x: per_sample(F.mse_loss(x, y, reduction="none")),
                lambda rng: _elementwise_inputs(rng, (6, 3)), {}),
        "l1": (losses.mean_absolute_error, lambda y, x: per_sample(F.l1_loss(x, y, reduction="none")),
               lambda rng: _elementwise_inputs(rng, (6, 3)), {}),
        "huber": (losses.huber, lambda y, x: per_sample(F.huber_loss(x, y, reduction="none", delta=1.5)),
                  lambda rng: _elementwise_inputs(rng, (6, 3)), {"delta": 1.5}),
        "cross_entropy_int": (
            losses.sparse_softmax_cross_entropy, lambda y, x: F.cross_entropy(x, y.long(), reduction="none"),
            lambda rng: (rng.integers(0, 5, 6), 3 * rng.standard_normal((6, 5))), {},
        ),
        "cross_entropy_int_3d": (  # torch puts classes on axis 1, flowlearn last
            losses.sparse_softmax_cross_entropy,
            lambda y, x: per_sample(F.cross_entropy(x.permute(0, 2, 1), y.long(), reduction="none")),
            lambda rng: (rng.integers(0, 5, (6, 2)), 3 * rng.standard_normal((6, 2, 5))), {},
        ),
        "cross_entropy_soft": (
            losses.softmax_cross_entropy, lambda y, x: F.cross_entropy(x, y, reduction="none"),
            lambda rng: (_soft_rows(rng, (6, 5)), 3 * rng.standard_normal((6, 5))), {},
        ),
        "bce_with_logits": (
            losses.sigmoid_cross_entropy,
            lambda y, x: per_sample(F.binary_cross_entropy_with_logits(x, y, reduction="none")),
            lambda rng: _elementwise_inputs(rng, (6, 3), labels="unit"), {},
        ),
        "bce_probabilities": (
            losses.binary_crossentropy, lambda y, x: per_sample(F.binary_cross_entropy(x, y, reduction="none")),
            lambda rng: _elementwise_inputs(rng, (6, 3), labels="unit", predictions="probs"), {},
        ),
    }


TORCH_NAMES = ["mse", "l1", "huber", "cross_entropy_int", "cross_entropy_int_3d", "cross_entropy_soft",
               "bce_with_logits", "bce_probabilities"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", TORCH_NAMES)
def test_matches_pytorch(name, reduction, weighted, device, rng):
    torch, cases = _torch_cases()
    function, torch_per_sample, make, kwargs = cases[name]
    labels, predictions = make(rng)
    labels = labels.astype("int64" if labels.dtype.kind == "i" else "float32")
    predictions = predictions.astype("float32")
    weights = rng.uniform(0.5, 2.0, 6).astype("float32") if weighted else None

    x = fl.tensor(predictions, requires_grad=True, device=device)
    out = function(labels, x, weights=weights, reduction=reduction, **kwargs)
    tx = torch.tensor(predictions, requires_grad=True)
    expected = torch_per_sample(torch.tensor(labels), tx)
    if weighted:
        expected = expected * torch.tensor(weights)
    expected = {"mean": expected.sum() / 6, "sum": expected.sum(), "none": expected}[reduction]

    upstream = rng.standard_normal(expected.shape).astype("float32")
    out.backward(fl.tensor(upstream, device=device))
    expected.backward(torch.tensor(upstream))
    numpy.testing.assert_allclose(_numpy(out), expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    numpy.testing.assert_allclose(fl.backend.to_numpy(x.grad), tx.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_mean_reduction_is_pytorchs_mean(device, rng):
    torch, cases = _torch_cases()
    F = torch.nn.functional
    labels, predictions = _elementwise_inputs(rng, (5, 4))
    y, x = labels.astype("float32"), predictions.astype("float32")
    ty, tx = torch.tensor(y), torch.tensor(x)
    for ours, theirs in [(losses.mean_squared_error, F.mse_loss), (losses.mean_absolute_error, F.l1_loss),
                         (losses.huber, F.huber_loss), (losses.sigmoid_cross_entropy,
                                                        lambda a, b: F.binary_cross_entropy_with_logits(a, b))]:
        target = ty.sigmoid() if ours is losses.sigmoid_cross_entropy else ty
        got = ours(target.numpy(), fl.tensor(x, device=device)).item()
        numpy.testing.assert_allclose(got, theirs(tx, target).item(), rtol=1e-5)
    labels = rng.integers(0, 4, 5)
    got = losses.sparse_softmax_cross_entropy(labels, fl.tensor(x, device=device), reduction="sum").item()
    numpy.testing.assert_allclose(got, F.cross_entropy(tx, torch.tensor(labels), reduction="sum").item(), rtol=1e-5)


# -- stability ----------------------------------------------------------------------------------
@pytest.fixture
def strict_floats():
    # exp(-2e4) underflowing to 0 is expected and harmless; overflow, 0/0 and log(0) are not.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with numpy.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_is_stable_at_huge_logits(dtype, device, strict_floats):
    logits = numpy.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    labels = numpy.array([0, 0])
    for loss_fn, y in [(losses.sparse_softmax_cross_entropy, labels),
                       (losses.softmax_cross_entropy, numpy.eye(3)[labels])]:
        x = fl.tensor(logits, dtype=dtype, requires_grad=True, device=device)
        out = loss_fn(y, x, reduction="none")
        out.backward(fl.tensor([1.0, 1.0], dtype=dtype, device=device))
        numpy.testing.assert_allclose(_numpy(out), [0.0, 2e4])
        numpy.testing.assert_allclose(fl.backend.to_numpy(x.grad), [[0, 0, 0], [-1, 1, 0]], atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_cross_entropy_is_stable_at_huge_logits(dtype, device, strict_floats):
    x = fl.tensor([1e4, -1e4, 1e4, -1e4, 0.0], dtype=dtype, requires_grad=True, device=device)
    out = losses.sigmoid_cross_entropy([1.0, 1.0, 0.0, 0.0, 1.0], x, reduction="none")
    out.backward(fl.tensor(numpy.ones(5), dtype=dtype, device=device))
    numpy.testing.assert_allclose(_numpy(out), [0.0, 1e4, 1e4, 0.0, numpy.log(2)], rtol=1e-6)
    numpy.testing.assert_allclose(fl.backend.to_numpy(x.grad), [0.0, -1.0, 1.0, 0.0, -0.5])


def test_probability_losses_are_finite_at_zero_and_one(device, strict_floats):
    p = fl.tensor([0.0, 1.0, 1.0, 0.0], requires_grad=True, device=device)
    out = losses.binary_crossentropy([1.0, 1.0, 0.0, 0.0], p, reduction="none")
    out.backward(fl.tensor(numpy.ones(4), device=device))
    low, high = float(numpy.float32(1e-7)), float(numpy.float32(1 - 1e-7))  # the clip bounds in float32
    expected = [-numpy.log(low), -numpy.log(high), -numpy.log1p(-high), -numpy.log1p(-low)]
    numpy.testing.assert_allclose(_numpy(out), expected, rtol=1e-5)
    assert numpy.all(fl.backend.to_numpy(p.grad) == 0)  # clipped: no gradient, as in Keras
    q = fl.tensor([[0.0, 1.0], [1.0, 0.0]], requires_grad=True, device=device)
    out = losses.sparse_categorical_crossentropy([0, 0], q)
    out.backward()
    assert numpy.isfinite(out.item()) and numpy.all(numpy.isfinite(fl.backend.to_numpy(q.grad)))


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_fn", [losses.sparse_softmax_cross_entropy, losses.sparse_categorical_crossentropy])
def test_class_labels_out_of_range_are_rejected(loss_fn, device):
    x = fl.tensor(numpy.full((4, 3), 0.3), device=device)
    with pytest.raises(ValueError, match=r"range \[0, 3\).*out-of-range values \[3, 5\]"):
        loss_fn([0, 3, 5, 3], x)
    with pytest.raises(ValueError, match=r"range \[0, 3\).*out-of-range values \[-1\]"):
        loss_fn([0, -1, 2, 1], x)
    with pytest.raises(ValueError, match="expected integer class labels"):
        loss_fn([0.5, 1, 2, 1], x)


def test_shape_mismatch_names_both_shapes(device):
    x = fl.tensor(numpy.zeros((4, 2)), device=device)
    with pytest.raises(ValueError, match=r"labels of shape \(4, 3\) and predictions of shape \(4, 2\)"):
        losses.mean_squared_error(numpy.zeros((4, 3)), x)
    with pytest.raises(ValueError, match=r"\(4,\).*\(4, 2\).*sparse_"):
        losses.softmax_cross_entropy(numpy.zeros(4, dtype=int), x)
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(4,\).*got labels of shape \(2,\)"):
        losses.sparse_softmax_cross_entropy([0, 1], x)
    with pytest.raises(ValueError, match=r"per-sample loss shape \(4,\).*weights of shape \(3,\)"):
        losses.mean_squared_error(numpy.zeros((4, 2)), x, weights=numpy.ones(3))
    with pytest.raises(ValueError, match=r"logits of shape \(batch, ..., classes\); got shape \(3,\)"):
        losses.softmax_cross_entropy(numpy.zeros(3), fl.tensor(numpy.zeros(3), device=device))


def test_bad_options_are_rejected(device):
    x = fl.tensor(numpy.zeros((2, 2)), device=device)
    with pytest.raises(ValueError, match=r"`reduction`.*\('mean', 'sum', 'none'\).*got 'avg'"):
        losses.mean_squared_error(x, x, reduction="avg")
    with pytest.raises(ValueError, match="positive `delta`; got delta=0.0"):
        losses.huber(x, x, delta=0)
    with pytest.raises(TypeError, match="expected float predictions; got dtype int64"):
        losses.mean_absolute_error(x, numpy.zeros((2, 2), dtype=numpy.int64))


# -- tracing ------------------------------------------------------------------------------------
def test_losses_trace_and_replay_from_json(rng):
    labels = rng.integers(0, 3, 4)
    logits = rng.standard_normal((4, 3)).astype("float32")
    targets = rng.standard_normal((4, 3)).astype("float32")

    def fn(y, x, t):
        return losses.sparse_softmax_cross_entropy(y, x, reduction="none") + losses.huber(t, x, delta=0.5)

    graph = fl.trace(fn, labels, logits, targets)
    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    labels2, logits2 = rng.integers(0, 3, 6), rng.standard_normal((6, 3)).astype("float32")
    targets2 = rng.standard_normal((6, 3)).astype("float32")
    with fl.no_grad():
        eager = fn(fl.tensor(labels2), fl.tensor(logits2), fl.tensor(targets2)).numpy()
    numpy.testing.assert_array_equal(restored.run(labels2, logits2, targets2), eager)


# -- Keras-style objects and get() --------------------------------------------------------------
def _keras_bce(z, p, eps=1e-7):
    p = numpy.clip(p, eps, 1 - eps)
    return -(z * numpy.log(p) + (1 - z) * numpy.log(1 - p)).mean(axis=-1)


def _keras_cce(z, p, eps=1e-7):
    p = numpy.clip(p / p.sum(axis=-1, keepdims=True), eps, 1 - eps)
    return -(z * numpy.log(p)).sum(axis=-1)


def test_keras_names_give_probability_losses(device, rng):
    z = rng.integers(0, 2, (6, 3)).astype("float64")
    p = rng.uniform(0, 1, (6, 3))
    p[0, 0] = 0.0  # clipped
    x = fl.tensor(p, dtype="float64", device=device)
    numpy.testing.assert_allclose(losses.get("binary_crossentropy")(z, x).item(), _keras_bce(z, p).mean())
    labels = rng.integers(0, 3, 6)
    one_hot = numpy.eye(3)[labels]
    numpy.testing.assert_allclose(losses.get("categorical_crossentropy")(one_hot, x).item(),
                                  _keras_cce(one_hot, p).mean())
    numpy.testing.assert_allclose(losses.get("sparse_categorical_crossentropy")(labels, x).item(),
                                  _keras_cce(one_hot, p).mean())
    weights = rng.uniform(size=6)
    numpy.testing.assert_allclose(losses.get("mse")(z, x, sample_weight=weights).item(),
                                  (weights * ((p - z) ** 2).mean(axis=1)).sum() / 6)
    numpy.testing.assert_allclose(losses.get("mae")(z, x).item(), numpy.abs(p - z).mean())
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("huber"), losses.Huber)


def test_from_logits_objects_are_the_logit_losses(device, rng):
    x = fl.tensor(rng.standard_normal((5, 3)), device=device)
    labels = rng.integers(0, 3, 5)
    one_hot = numpy.eye(3)[labels]
    pairs = [
        (losses.BinaryCrossentropy(from_logits=True), losses.sigmoid_cross_entropy, one_hot),
        (losses.CategoricalCrossentropy(from_logits=True), losses.softmax_cross_entropy, one_hot),
        (losses.SparseCategoricalCrossentropy(from_logits=True), losses.sparse_softmax_cross_entropy, labels),
    ]
    for loss, function, y in pairs:
        assert loss(y, x).item() == function(y, x).item()
    summed = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(labels, x)
    assert summed.shape == (5,)


def test_loss_configs_round_trip():
    for loss in [losses.Huber(delta=2.0, reduction="sum"), losses.BinaryCrossentropy(from_logits=True),
                 losses.SparseCategoricalCrossentropy(name="sce"), losses.MeanAbsoluteError()]:
        config = loss.get_config()
        json.dumps(config)
        again = losses.get({"class_name": type(loss).__name__, "config": config})
        assert type(again) is type(loss) and again.get_config() == config
    assert losses.Huber(3.0).get_config() == {"name": "huber_loss", "reduction": "mean", "delta": 3.0}


def test_get_rejects_unknown_identifiers():
    with pytest.raises(ValueError, match=r"Unknown loss 'msee'; expected one of .*'mse'"):
        losses.get("msee")
    with pytest.raises(ValueError, match=r"`reduction`.*got 'avg'"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(TypeError, match="Could not interpret loss identifier"):
        losses.get(3)
    loss = losses.MeanSquaredError()
    assert losses.get(loss) is loss and losses.get(None) is None
