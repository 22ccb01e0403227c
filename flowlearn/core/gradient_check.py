"""Numerical gradient checking: the test every primitive and loss passes.

Central differences in float64 against the analytic backward, for every input that requires grad.
"""
import numpy

from . import backend
from .tensor import Tensor, tensor


def numerical_grad(fn, arrays, index, out_grad, eps):
    """d(sum(fn(*arrays) * out_grad)) / d(arrays[index]) by central differences."""
    x = arrays[index]
    grad = numpy.zeros(x.shape, dtype=numpy.float64)
    flat = x.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = float((backend.to_numpy(fn(*arrays)) * out_grad).sum())
        flat[i] = original - eps
        minus = float((backend.to_numpy(fn(*arrays)) * out_grad).sum())
        flat[i] = original
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(fn, inputs, *, wrt=None, eps=1e-6, atol=1e-6, rtol=1e-5, device="cpu", seed=0):
    """Assert that autodiff gradients of ``fn`` match central differences.

    Parameters
    ----------
    fn : callable
        Takes Tensors, returns a Tensor.
    inputs : sequence of array-like
        Converted to float64 tensors (integer arrays are passed through without gradient).
    wrt : sequence of int, optional
        Indices of the inputs to differentiate; all float inputs by default.
    device : {"cpu", "gpu"}
    """
    rng = numpy.random.default_rng(seed)
    arrays = [numpy.array(a, dtype=numpy.float64) if numpy.asarray(a).dtype.kind == "f" else numpy.asarray(a)
              for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    tensors = [tensor(a, requires_grad=i in wrt, dtype=a.dtype, device=device) for i, a in enumerate(arrays)]
    output = fn(*tensors)
    out_grad = rng.standard_normal(output.shape)
    output.backward(tensor(out_grad, dtype="float64", device=device))

    def evaluate(*values):
        ts = [tensor(v, dtype=v.dtype, device=device) for v in values]
        return fn(*ts).data

    for i in wrt:
        expected = numerical_grad(evaluate, arrays, i, out_grad, eps)
        actual = tensors[i].grad
        if actual is None:
            raise AssertionError(f"input {i}: no gradient was computed")
        actual = backend.to_numpy(actual)
        if not numpy.allclose(actual, expected, atol=atol, rtol=rtol):
            worst = numpy.abs(actual - expected).max()
            raise AssertionError(
                f"input {i}: analytic and numerical gradients differ (max abs diff {worst:.3g})\n"
                f"analytic:\n{actual}\nnumerical:\n{expected}"
            )
    return True
