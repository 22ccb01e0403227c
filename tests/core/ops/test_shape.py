"""Shape ops: reshape, transpose, expand_dims, squeeze, concat, stack, pad, broadcast_to, cast, to_device."""
import json

import numpy
import pytest

import flowlearn as fl
from flowlearn.core.backend import to_numpy
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.trace import Graph


@pytest.mark.parametrize("shape, new", [
    ((6,), (2, 3)), ((2, 3), (-1,)), ((2, 3, 4), (4, -1)), ((2, 3), (3, 1, 2)), ((1,), ()), ((), (1, 1)),
])
def test_reshape(device, rng, shape, new):
    x = rng.standard_normal(shape)
    assert fl.ops.reshape(fl.tensor(x, device=device), new).shape == x.reshape(new).shape
    check_gradients(lambda t: t.reshape(new), [x], device=device)


def test_reshape_accepts_separate_sizes(device):
    x = fl.tensor(numpy.arange(6.0), device=device)
    assert x.reshape(3, -1).shape == (3, 2)
    assert fl.ops.reshape(x, shape=(2, 3)).shape == (2, 3)


def test_reshape_errors_name_both_shapes(device):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) "
                                         r"into shape \(4, 2\) \(8 elements\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(6 elements\) into shape \(4, -1\)"):
        x.reshape(4, -1)
    with pytest.raises(ValueError, match=r"at most one -1; got \(-1, -1\)"):
        x.reshape(-1, -1)
    with pytest.raises(TypeError, match="reshape: expected `shape` to be an integer; got 2.0"):
        x.reshape(2.0, 3)


@pytest.mark.parametrize("shape, axes", [
    ((2, 3), None), ((2, 3, 4), None), ((2, 3, 4), (1, 2, 0)), ((2, 3, 4), (-1, 0, -2)), ((5,), (0,)),
])
def test_transpose(device, rng, shape, axes):
    x = rng.standard_normal(shape)
    numpy.testing.assert_array_equal(fl.ops.transpose(fl.tensor(x, dtype="float64", device=device), axes).numpy(),
                                     numpy.transpose(x, axes))
    check_gradients(lambda t: fl.ops.transpose(t, axes), [x], device=device)


def test_transpose_forms_and_errors(device):
    x = fl.tensor(numpy.ones((2, 3, 4)), device=device)
    assert x.transpose(2, 0, 1).shape == (4, 2, 3)
    assert x.T.shape == (4, 3, 2)
    with pytest.raises(ValueError, match=r"transpose: expected `axes` to be a permutation of the 3 axes .* got \(0, 0, 1\)"):
        x.transpose((0, 0, 1))
    with pytest.raises(ValueError, match=r"transpose: `axes`=3 is out of range for a tensor of rank 3"):
        x.transpose((0, 1, 3))


@pytest.mark.parametrize("shape, axis", [((3,), 0), ((3,), -1), ((2, 3), 1), ((2, 3), (0, -1)), ((), 0)])
def test_expand_dims(device, rng, shape, axis):
    x = rng.standard_normal(shape)
    assert fl.ops.expand_dims(fl.tensor(x, device=device), axis).shape == numpy.expand_dims(x, axis).shape
    check_gradients(lambda t: t.expand_dims(axis), [x], device=device)


@pytest.mark.parametrize("shape, axis", [((1, 3, 1), None), ((1, 3, 1), 0), ((1, 3, 1), (-1, 0)), ((1,), None)])
def test_squeeze(device, rng, shape, axis):
    x = rng.standard_normal(shape)
    assert fl.ops.squeeze(fl.tensor(x, device=device), axis).shape == numpy.squeeze(x, axis).shape
    check_gradients(lambda t: t.squeeze(axis), [x], device=device)


def test_squeeze_and_expand_dims_errors(device):
    x = fl.tensor(numpy.ones((1, 3)), device=device)
    with pytest.raises(ValueError, match=r"squeeze: expected axis 1 to have size 1; got size 3 in shape \(1, 3\)"):
        x.squeeze(1)
    with pytest.raises(ValueError, match=r"expand_dims: `axis`=3 is out of range for a tensor of rank 3"):
        x.expand_dims(3)


@pytest.mark.parametrize("shapes, axis", [
    ([(2, 3), (4, 3), (1, 3)], 0), ([(2, 3), (2, 1)], 1), ([(2, 3), (2, 2)], -1), ([(2, 1, 3), (2, 4, 3)], 1),
    ([(5,)], 0),
])
def test_concat(device, rng, shapes, axis):
    xs = [rng.standard_normal(s) for s in shapes]
    y = fl.ops.concat([fl.tensor(x, dtype="float64", device=device) for x in xs], axis=axis)
    numpy.testing.assert_array_equal(y.numpy(), numpy.concatenate(xs, axis=axis))
    check_gradients(lambda *ts: fl.ops.concat(list(ts), axis=axis), xs, device=device)


def test_concat_gradient_only_where_needed_and_dtype_promotion(device):
    a = fl.tensor([[1.0, 2.0]], requires_grad=True, device=device)
    b = fl.tensor([[3, 4]], device=device)  # integers join float32 as float32, not float64
    y = fl.ops.concat([a, b, [[5.0, 6.0]]], axis=0)
    assert y.dtype == numpy.float32 and y.shape == (3, 2)
    (y * fl.tensor([[1.0], [2.0], [3.0]], device=device)).sum().backward()
    assert a.grad.tolist() == [[1.0, 1.0]] and b.grad is None


def test_concat_errors(device):
    a, b = fl.tensor(numpy.ones((2, 3)), device=device), fl.tensor(numpy.ones((3, 4)), device=device)
    with pytest.raises(ValueError, match=r"concat: all tensors must have the same shape except along axis 0; "
                                         r"got shapes \(2, 3\) \(tensor 0\) and \(3, 4\) \(tensor 1\)"):
        fl.ops.concat([a, b])
    with pytest.raises(ValueError, match=r"concat: `axis`=2 is out of range for a tensor of rank 2"):
        fl.ops.concat([a, a], axis=2)
    with pytest.raises(ValueError, match="concat: expected at least one tensor"):
        fl.ops.concat([])
    with pytest.raises(TypeError, match="concat: expected a list or tuple of tensors; got Tensor"):
        fl.ops.concat(a)


@pytest.mark.parametrize("shape, axis", [((3,), 0), ((3,), 1), ((3,), -1), ((2, 3), 1), ((), 0)])
def test_stack(device, rng, shape, axis):
    xs = [rng.standard_normal(shape) for _ in range(3)]
    y = fl.ops.stack([fl.tensor(x, dtype="float64", device=device) for x in xs], axis=axis)
    numpy.testing.assert_array_equal(y.numpy(), numpy.stack(xs, axis=axis))
    check_gradients(lambda *ts: fl.ops.stack(list(ts), axis=axis), xs, device=device)


def test_stack_errors(device):
    a, b = fl.tensor(numpy.ones((2, 3)), device=device), fl.tensor(numpy.ones((3, 2)), device=device)
    with pytest.raises(ValueError, match=r"stack: all tensors must have the same shape; got shapes \(2, 3\) \(tensor 0\) "
                                         r"and \(3, 2\) \(tensor 1\)"):
        fl.ops.stack([a, b])
    with pytest.raises(ValueError, match=r"stack: `axis`=-4 is out of range for a tensor of rank 3"):
        fl.ops.stack([a, a], axis=-4)


@pytest.mark.parametrize("shape, pad_width, value", [
    ((3,), 2, 0), ((2, 3), (1, 2), 0.5), ((2, 3), ((0, 1), (2, 0)), 0), ((1, 2, 2), ((1, 1),), -1.0),
    ((2, 2), ((1,), (2,)), 0),
])
def test_pad(device, rng, shape, pad_width, value):
    x = rng.standard_normal(shape)
    y = fl.ops.pad(fl.tensor(x, dtype="float64", device=device), pad_width, constant_values=value)
    numpy.testing.assert_array_equal(y.numpy(), numpy.pad(x, pad_width, constant_values=value))
    check_gradients(lambda t: fl.ops.pad(t, pad_width, constant_values=value), [x], device=device)


def test_pad_errors(device):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"pad: expected `pad_width` to be .* for a tensor of rank 2; got \(1, 2, 3\)"):
        fl.ops.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"pad: expected non-negative pad widths; got \(-1, 0\)"):
        fl.ops.pad(x, (-1, 0))


@pytest.mark.parametrize("shape, target", [((3,), (2, 3)), ((2, 1), (2, 4)), ((1, 3, 1), (2, 2, 3, 5)), ((), (2,))])
def test_broadcast_to(device, rng, shape, target):
    x = rng.standard_normal(shape)
    numpy.testing.assert_array_equal(fl.tensor(x, dtype="float64", device=device).broadcast_to(target).numpy(),
                                     numpy.broadcast_to(x, target))
    check_gradients(lambda t: fl.ops.broadcast_to(t, target), [x], device=device)


def test_broadcast_to_error(device):
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast a tensor of shape \(2, 3\) to shape \(3, 3\)"):
        fl.tensor(numpy.ones((2, 3)), device=device).broadcast_to((3, 3))


def test_cast_gradient_returns_in_input_dtype(device, rng):
    x = rng.standard_normal((2, 3))
    # Linear through a float32 round trip: a large step keeps float32 rounding out of the differences.
    check_gradients(lambda t: fl.ops.cast(t, "float32").astype("float64") * 2.0, [x], device=device, eps=1e-2,
                    atol=1e-4)
    a = fl.tensor(x, requires_grad=True, device=device)
    (a.astype("float64") ** 2).sum().backward()
    assert a.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(to_numpy(a.grad), 2 * x.astype(numpy.float32), rtol=1e-6)


def test_cast_to_integer_records_no_gradient_and_same_dtype_is_identity(device):
    x = fl.tensor([1.7, -2.2], requires_grad=True, device=device)
    y = x.astype("int32")
    assert y.dtype == numpy.int32 and y.tolist() == [1, -2] and not y.requires_grad
    assert x.astype("float32") is x
    with pytest.raises(TypeError, match="cast: expected a boolean, integer or float dtype; got complex64"):
        x.astype("complex64")


def test_to_device_copies_the_gradient_back(device):
    x = fl.tensor([1.0, 2.0], requires_grad=True, device=device)
    y = fl.ops.to_device(x, "cpu")
    assert y.device == "cpu" and y.requires_grad
    (y * fl.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [3.0, 4.0] and x.device == device
    assert x.to(device) is x
    with pytest.raises(ValueError, match="expected one of .*got 'tpu'"):
        fl.ops.to_device(x, "tpu")


def test_traced_reshape_keeps_minus_one_for_another_batch_size(device):
    graph = fl.trace(lambda x: fl.ops.concat([x.reshape(-1, 6), x.reshape(-1, 6)], axis=-1).T, numpy.ones((4, 2, 3)))
    spec = json.loads(json.dumps(graph.to_dict()))  # through JSON: list attrs come back as tuples
    replayed = Graph.from_dict(spec, graph.arrays)
    x = numpy.arange(30.0, dtype=numpy.float32).reshape(5, 2, 3)
    numpy.testing.assert_array_equal(replayed.run(x), numpy.concatenate([x.reshape(5, 6)] * 2, axis=1).T)


def test_ten_thousand_op_chain_has_no_recursion_limit(device):
    x = fl.tensor(numpy.arange(6.0).reshape(1, 6), requires_grad=True, device=device)
    y = x
    for _ in range(3334):  # 3 ops per round: 10,002 nodes
        y = y.reshape(6)[None].sum(axis=0, keepdims=True)
    y.sum().backward()
    numpy.testing.assert_array_equal(to_numpy(x.grad), numpy.ones((1, 6)))
