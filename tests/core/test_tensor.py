import numpy
import pytest

import flowlearn as fl


def test_float_data_defaults_to_float32(device):
    assert fl.tensor([1.0, 2.0], device=device).dtype == numpy.float32
    assert fl.tensor(numpy.zeros(3, dtype=numpy.float64), device=device).dtype == numpy.float32
    assert fl.tensor([1, 2], device=device).dtype == numpy.int64
    assert fl.tensor([1, 2], dtype="float64", device=device).dtype == numpy.float64


def test_default_float_dtype_is_one_setting():
    try:
        fl.set_floatx("float64")
        assert fl.tensor([1.0]).dtype == numpy.float64
    finally:
        fl.set_floatx("float32")
    with pytest.raises(ValueError, match="expected one of"):
        fl.set_floatx("int8")


def test_attributes_and_conversions(device):
    t = fl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, device=device)
    assert t.shape == (2, 2) and t.ndim == 2 and t.size == 4 and t.device == device
    assert t.requires_grad and t.grad is None and t.is_leaf
    numpy.testing.assert_array_equal(t.numpy(), [[1, 2], [3, 4]])
    assert fl.tensor([5.0], device=device).item() == 5.0
    assert not t.detach().requires_grad
    assert t.to(device) is t
    with pytest.raises(ValueError, match="single-element"):
        t.item()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="float"):
        fl.tensor([1, 2], requires_grad=True)


def test_string_data_is_rejected():
    with pytest.raises(TypeError, match="numeric"):
        fl.tensor(["a", "b"])


def test_python_scalars_keep_tensor_dtype(device):
    x = fl.tensor([1.0, 2.0], device=device)
    assert (x * 2.5).dtype == numpy.float32
    assert (2 + x).dtype == numpy.float32
    assert (fl.tensor([1, 2], device=device) * 0.5).dtype == numpy.float32


def test_numpy_on_the_left_defers_to_tensor():
    x = fl.tensor([1.0, 2.0], requires_grad=True)
    y = numpy.array([3.0, 4.0], dtype=numpy.float32) * x
    assert isinstance(y, fl.Tensor)
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_comparisons_return_bool_tensors_without_grad():
    x = fl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x > 1.5
    assert mask.dtype == numpy.bool_ and not mask.requires_grad
    numpy.testing.assert_array_equal(mask.numpy(), [False, True, True])


def test_gpu_without_gpu_raises_a_clear_error():
    from flowlearn.core import backend

    if backend.gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="cupy|GPU"):
        fl.tensor([1.0], device="gpu")


def test_unknown_device_lists_valid_ones():
    with pytest.raises(ValueError, match="cpu"):
        fl.tensor([1.0], device="tpu")


# -- integer division and float16 -----------------------------------------------------------------
@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_true_division_of_integers_gives_the_default_float_dtype(floatx, device):
    a = fl.tensor([1, 2, 7], device=device)
    b = fl.tensor([2, 2, 2], dtype="int32", device=device)
    try:
        fl.set_floatx(floatx)
        for result in (a / b, a / 2, 7 / a, fl.tensor([True, False], device=device) / True):
            assert result.dtype == numpy.dtype(floatx)
        numpy.testing.assert_allclose((a / b).numpy(), [0.5, 1.0, 3.5])
    finally:
        fl.set_floatx("float32")


def test_division_keeps_a_float_operands_dtype():
    assert (fl.tensor([1, 2]) / fl.tensor([2.0], dtype="float64")).dtype == numpy.float64
    assert (fl.tensor([1.0, 2.0]) / 3).dtype == numpy.float32


def test_floor_division_of_integers_stays_integer(device):
    a = fl.tensor([7, -7, 9], device=device)
    assert (a // 2).dtype == numpy.int64
    numpy.testing.assert_array_equal((a // 2).numpy(), [3, -4, 4])
    numpy.testing.assert_array_equal((20 // a).numpy(), [2, -3, 2])
    small = fl.tensor([7, 8], dtype="int32", device=device)
    assert (small // small).dtype == numpy.int32
    x = fl.tensor([7.5, -7.5], requires_grad=True, device=device)
    y = x // 2
    assert y.dtype == numpy.float32 and not y.requires_grad  # piecewise constant: no gradient
    numpy.testing.assert_array_equal(y.numpy(), [3.0, -4.0])


def test_float16_default_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match=r"float16 is not supported.*loss scaling.*'float32'.*'float64'"):
        fl.set_floatx("float16")
    assert fl.floatx() == numpy.float32
    # Explicit float16 tensors still work with the ops.
    h = fl.tensor([1.0, 2.0], dtype="float16", requires_grad=True)
    (h * h).sum().backward()
    assert (h * 2).dtype == numpy.float16 and h.grad.dtype == numpy.float16
    numpy.testing.assert_array_equal(h.grad, [2.0, 4.0])
