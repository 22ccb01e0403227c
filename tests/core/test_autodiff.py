import numpy
import pytest

import flowlearn as fl
from flowlearn.core.gradient_check import check_gradients


def test_tensor_used_twice_accumulates(device):
    x = fl.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    y = x * x + x  # x reaches the output through three paths
    y.sum().backward()
    numpy.testing.assert_allclose(fl.tensor(x.grad).numpy(), [3.0, 5.0, 7.0])


def test_backward_twice_accumulates_into_leaf_grad():
    x = fl.tensor([2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 4).sum().backward()
    numpy.testing.assert_allclose(x.grad, [7.0])


def test_no_grad_records_nothing():
    x = fl.tensor([1.0, 2.0], requires_grad=True)
    with fl.no_grad():
        y = x * 2 + 1
        with fl.enable_grad():
            z = x * 2
    assert not y.requires_grad and y._node is None
    assert z.requires_grad
    assert fl.is_grad_enabled()


def test_no_grad_is_thread_local():
    import threading

    seen = []
    with fl.no_grad():
        thread = threading.Thread(target=lambda: seen.append(fl.is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


def test_ten_thousand_op_chain_backpropagates_without_recursion_error():
    x = fl.tensor([1.0], requires_grad=True, dtype="float64")
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-9)


def test_graph_is_freed_after_backward_unless_retained():
    x = fl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    numpy.testing.assert_allclose(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_needs_grad_for_non_scalar_and_checks_its_shape():
    x = fl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match="single-element"):
        y.backward()
    with pytest.raises(ValueError, match=r"expected grad of shape \(2,\)"):
        y.backward(numpy.ones(3))


def test_backward_on_constant_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (fl.tensor([1.0]) * 2).backward()


def test_gradients_are_never_shared_mutably():
    # add hands the same gradient array to both inputs; accumulating into one must not change the other.
    a = fl.tensor([1.0], requires_grad=True)
    b = fl.tensor([1.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad = a.grad + 10
    numpy.testing.assert_allclose(b.grad, [1.0])


def test_mismatched_shapes_name_both_shapes_and_the_op():
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\) and \(4,\)"):
        fl.tensor(numpy.ones((2, 3))) + fl.tensor(numpy.ones(4))


@pytest.mark.parametrize(
    "shape_a, shape_b", [((3,), (3,)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 1), (1, 3)), ((4, 1, 3), (2, 1))]
)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum", "pow"])
def test_binary_gradients_with_broadcasting_on_both_sides(op, shape_a, shape_b, device):
    rng = numpy.random.default_rng(1)
    a = rng.uniform(0.5, 2.0, shape_a)
    b = rng.uniform(0.5, 2.0, shape_b)
    check_gradients(getattr(fl.ops, op), [a, b], device=device)


@pytest.mark.parametrize("bias_shape", [(32,), (1, 1, 32), (1, 1, 1, 32), (28, 32), (8,)])
def test_large_bias_gradients_match_float64_sums(bias_shape, device):
    # Large enough (>= 4096 rows) for the BLAS ones-vector path of the broadcast reduction.
    rng = numpy.random.default_rng(3)
    x_shape = (40, 28, 28, bias_shape[-1]) if bias_shape != (8,) else (9000, 8)
    x = fl.tensor(rng.standard_normal(x_shape), device=device)
    bias = fl.tensor(numpy.zeros(bias_shape), requires_grad=True, device=device)
    upstream = rng.standard_normal(x_shape)
    (x + bias).backward(fl.tensor(upstream, device=device))
    expected = upstream.sum(axis=tuple(range(len(x_shape) - len(bias_shape))))
    expected = expected.sum(axis=tuple(i for i, n in enumerate(bias_shape) if n == 1), keepdims=True)
    got = fl.tensor(bias.grad).numpy()
    assert got.shape == bias_shape and got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-3)


def test_where_and_clip_gradients(device):
    rng = numpy.random.default_rng(2)
    cond = rng.random((3, 4)) > 0.5
    check_gradients(lambda a, b: fl.ops.where(fl.tensor(cond, device=device), a, b),
                    [rng.random((3, 4)), rng.random((4,))], device=device)
    x = rng.uniform(-2, 2, (5, 3))
    x[numpy.abs(numpy.abs(x) - 1) < 0.05] = 0.3  # keep away from the kinks
    check_gradients(lambda a: fl.ops.clip(a, -1, 1), [x], device=device)
    with pytest.raises(ValueError, match="low"):
        fl.ops.clip(fl.tensor(x), None, None)


def test_neg_gradient(device):
    check_gradients(lambda a: -a, [numpy.arange(6.0).reshape(2, 3)], device=device)


# -- every leaf owns its .grad ----------------------------------------------------------------------
def _assert_owned(grad):
    assert getattr(grad.flags, "writeable", True), "a leaf's grad must be writable"  # cupy has no such flag
    assert grad.base is None, "a leaf's grad must not be a view of another array"


@pytest.mark.parametrize("as_tensor", [False, True], ids=["array", "Tensor"])
def test_add_with_an_explicit_upstream_gives_each_leaf_its_own_grad(as_tensor, device):
    a = fl.tensor([1.0, 2.0], requires_grad=True, device=device)
    b = fl.tensor([3.0, 4.0], requires_grad=True, device=device)
    upstream = fl.tensor([0.5, -1.0], device=device)
    (a + b).backward(upstream if as_tensor else upstream.data)
    assert a.grad is not b.grad and a.grad is not upstream.data and b.grad is not upstream.data
    _assert_owned(a.grad)
    _assert_owned(b.grad)
    a.grad *= 10  # writing into one grad touches neither the other nor the caller's array
    numpy.testing.assert_array_equal(fl.tensor(b.grad).numpy(), [0.5, -1.0])
    numpy.testing.assert_array_equal(upstream.numpy(), [0.5, -1.0])


def test_sum_backward_leaves_a_writable_grad_not_a_broadcast_view(device):
    w = fl.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    (w.sum() * 2).backward()
    _assert_owned(w.grad)
    w.grad += 1
    numpy.testing.assert_array_equal(fl.tensor(w.grad).numpy(), [3.0, 3.0, 3.0])


def test_mean_and_broadcast_add_leave_owned_grads():
    x = fl.tensor(numpy.ones((4, 3)), requires_grad=True)
    bias = fl.tensor(numpy.zeros(3), requires_grad=True)
    (x + bias).mean().backward()
    _assert_owned(x.grad)
    _assert_owned(bias.grad)
    numpy.testing.assert_allclose(bias.grad, [1 / 3] * 3, rtol=1e-6)


@pytest.mark.parametrize("expression", [
    lambda a, b: a + b,
    lambda a, b: (a + b) + a * 0.0,
    lambda a, b: a.reshape(2, 2) + b.reshape(2, 2),
    lambda a, b: a - (-b),
    lambda a, b: a[:] + b[:],
    lambda a, b: a + a + b,
], ids=["add", "add-twice", "reshape", "sub-neg", "slice", "same-leaf-twice"])
def test_two_leaves_never_share_a_grad_object(expression):
    a = fl.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = fl.tensor([5.0, 6.0, 7.0, 8.0], requires_grad=True)
    out = expression(a, b)
    out.backward(numpy.ones(out.shape, dtype=numpy.float32))
    assert a.grad is not b.grad
    _assert_owned(a.grad)
    _assert_owned(b.grad)
    numpy.testing.assert_allclose(b.grad, numpy.ones(4))


def test_leaf_root_does_not_keep_the_callers_gradient():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    upstream = fl.tensor([3.0, 4.0])
    w.backward(upstream)
    assert w.grad is not upstream.data
    w.grad += 1
    numpy.testing.assert_array_equal(upstream.numpy(), [3.0, 4.0])


def test_accumulation_over_two_backward_calls_adds_into_a_fresh_array():
    w = fl.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    first = w.grad
    (w * w).sum().backward()
    numpy.testing.assert_allclose(w.grad, [3.0 + 2.0, 3.0 + 4.0])
    numpy.testing.assert_array_equal(first, [3.0, 3.0])  # the earlier array is not written into
    _assert_owned(w.grad)
