"""In-place writes between forward and backward are detected (the version counter), not silently
turned into wrong gradients."""
import numpy
import pytest

import flowlearn as fl
from flowlearn.core import optimizers

MODIFIED = "modified by an inplace operation"


def _dense_loss(w, x):
    return (x @ w).sum()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_optimizer_step_between_forward_and_backward_raises_naming_the_tensor(name, device):
    rng = numpy.random.default_rng(0)
    w = fl.tensor(rng.standard_normal((3, 2)), requires_grad=True, name="dense/kernel", device=device)
    x = fl.tensor(rng.standard_normal((4, 3)), device=device)
    loss = _dense_loss(w, x)
    w.grad = fl.tensor(numpy.ones((3, 2)), device=device).data
    optimizers.get(name, learning_rate=0.1).step([w])
    w.grad = None
    with pytest.raises(RuntimeError, match=MODIFIED) as info:
        loss.backward()
    message = str(info.value)
    assert "'dense/kernel'" in message and "'matmul'" in message
    assert "version 1" in message and "expected version 0" in message


def test_unnamed_tensor_is_named_by_shape_and_dtype():
    w = fl.tensor(numpy.ones((2, 5)), requires_grad=True)
    loss = (w * w).sum()
    w.assign(numpy.zeros((2, 5)))
    with pytest.raises(RuntimeError, match=r"unnamed tensor of shape \(2, 5\) and dtype float32.*'mul'"):
        loss.backward()


def test_assign_to_a_saved_input_that_needs_no_grad_raises():
    # x needs no gradient, but mul saved it to compute w's.
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    x = fl.tensor([3.0, 4.0], name="x")
    loss = (w * x).sum()
    x.assign([0.0, 0.0])
    with pytest.raises(RuntimeError, match=r"'x'.*'mul'"):
        loss.backward()


def test_write_to_a_transposed_view_source_is_seen():
    # The matmul saved w.T (a view): the write to w must reach its version.
    w = fl.tensor(numpy.ones((2, 3)), requires_grad=True, name="w")
    x = fl.tensor(numpy.ones((4, 3)))
    loss = (x @ w.T).sum()
    w.assign(numpy.full((2, 3), 5.0))
    with pytest.raises(RuntimeError, match="a view of the tensor that was written"):
        loss.backward()


def test_write_through_detach_is_seen():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    w.detach().assign([7.0, 7.0])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_write_to_an_input_backward_does_not_read_is_allowed():
    # add keeps only shapes, so the bias gradient does not depend on the overwritten values (as in PyTorch).
    bias = fl.tensor([1.0, 2.0], requires_grad=True)
    loss = (fl.tensor(numpy.ones((3, 2))) + bias).sum()
    bias.assign([0.0, 0.0])
    loss.backward()
    numpy.testing.assert_array_equal(bias.grad, [3.0, 3.0])


def test_retained_graph_is_checked_again_after_an_update():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    optimizers.SGD(learning_rate=0.1).step([w])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_training_loop_with_a_fresh_forward_each_step_is_unaffected():
    rng = numpy.random.default_rng(1)
    w = fl.tensor(rng.standard_normal((3, 1)), requires_grad=True)
    x = fl.tensor(rng.standard_normal((8, 3)))
    target = x @ fl.tensor([[1.0], [-2.0], [0.5]])
    opt = optimizers.SGD(learning_rate=0.3)
    for _ in range(300):
        opt.minimize(lambda: ((x @ w - target) ** 2).mean(), [w])
    numpy.testing.assert_allclose(w.numpy().ravel(), [1.0, -2.0, 0.5], atol=1e-3)
    assert w._version == 300


def test_layer_set_weights_between_forward_and_backward_raises():
    layer = fl.layers.Dense(2)
    x = fl.tensor(numpy.ones((4, 3)))
    loss = layer(x).sum()
    layer.set_weights([numpy.zeros(w.shape) for w in layer.weights])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_batch_norm_moving_statistics_saved_by_inference_are_versioned():
    x = fl.tensor(numpy.arange(12.0).reshape(4, 3), requires_grad=True)
    mean, variance = fl.tensor(numpy.zeros(3)), fl.tensor(numpy.ones(3))
    inference = fl.ops.batch_norm(x, None, None, mean, variance, training=False).sum()
    fl.ops.batch_norm(x, None, None, mean, variance, training=True)  # updates the statistics in place
    with pytest.raises(RuntimeError, match=MODIFIED):
        inference.backward()


# -- assign --------------------------------------------------------------------------------------
def test_assign_writes_in_place_casts_broadcasts_and_bumps_the_version():
    w = fl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    data = w.data
    assert w.assign(numpy.array([5, 6])) is w
    assert w.data is data and w.dtype == numpy.float32
    numpy.testing.assert_array_equal(w.numpy(), [[5, 6], [5, 6]])
    w.assign(fl.tensor(0.5))
    numpy.testing.assert_array_equal(w.numpy(), numpy.full((2, 2), 0.5))
    assert w._version == 2


def test_assign_checks_the_shape():
    w = fl.tensor(numpy.zeros((2, 3)), name="kernel")
    with pytest.raises(ValueError, match=r"broadcasts to tensor 'kernel' of shape \(2, 3\).*got shape \(3, 2\)"):
        w.assign(numpy.ones((3, 2)))
    assert w._version == 0


def test_assign_refuses_a_computed_tensor():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    y = w * 2
    with pytest.raises(RuntimeError, match="expected a leaf tensor.*'mul'"):
        y.assign([0.0, 0.0])


def test_assign_refuses_a_read_only_array():
    array = numpy.zeros(2, dtype=numpy.float32)
    array.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        fl.tensor(array).assign([1.0, 1.0])


def test_tensor_made_from_a_tensor_shares_its_version_when_it_shares_its_data():
    w = fl.tensor([1.0, 2.0])
    same = fl.tensor(w)
    copy = fl.tensor(w, dtype="float64")
    w.assign([3.0, 3.0])
    assert same._version == 1 and copy._version == 0


@pytest.mark.parametrize("op", [
    lambda w: w.relu(), lambda w: w.exp(), lambda w: w.sum(), lambda w: w.mean(), lambda w: w.reshape(3, 2),
    lambda w: w.T, lambda w: w.astype("float64"), lambda w: fl.ops.tanh(w), lambda w: fl.ops.sigmoid(w),
], ids=["relu", "exp", "sum", "mean", "reshape", "transpose", "cast", "tanh", "sigmoid"])
def test_ops_that_save_only_their_output_or_shapes_allow_a_later_write(op):
    # Their gradient is the one of the values the forward saw (as in PyTorch): nothing to refuse.
    # (add after them saves nothing either; a mul would save a view of w and rightly refuse.)
    start = numpy.linspace(-1.0, 1.0, 6).reshape(2, 3)
    w = fl.tensor(start, requires_grad=True)
    reference = fl.tensor(start, requires_grad=True)
    loss = (op(w) + 1.5).sum()
    w.assign(numpy.zeros((2, 3)))
    loss.backward()
    (op(reference) + 1.5).sum().backward()
    numpy.testing.assert_allclose(w.grad, reference.grad, rtol=1e-6)


def test_an_op_returning_its_input_array_shares_the_version():
    from flowlearn.core.ops.shape import to_device

    w = fl.tensor([1.0, 2.0], requires_grad=True)
    same = to_device(w, "cpu")  # no copy on the same device: one array, so one version
    loss = (same * same).sum()
    w.assign([0.0, 0.0])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_a_stale_graph_raises_before_any_gradient_is_written():
    a = fl.tensor([1.0, 2.0], requires_grad=True)
    w = fl.tensor([3.0, 4.0], requires_grad=True)
    loss = (a * 2).sum() + (w * w).sum()
    w.assign([0.0, 0.0])
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()
    assert a.grad is None and w.grad is None
    w.assign([3.0, 4.0])  # nothing was freed either: the same error, not "a second time"
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()
