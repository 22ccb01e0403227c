"""Indexing: getitem with gradients (basic, advanced, boolean), one_hot and argmax."""
import json

import numpy
import pytest

import flowlearn as fl
from flowlearn.core.gradient_check import check_gradients
from flowlearn.core.trace import Graph

MASK = numpy.array([[True, False, True, True], [False, False, True, False], [True, True, False, False]])
INDEXES = {
    "int": 1,
    "negative int": (-1, 2),
    "slice": (slice(1, None), slice(None, 3)),
    "negative steps": (slice(None, None, -1), slice(3, 0, -2)),
    "newaxis and ellipsis": (None, Ellipsis, slice(None, None, 2), None),
    "int array with repeats": [2, 0, 2, 2],
    "2-d int array": numpy.array([[0, 1], [1, 1]]),
    "paired int arrays": ([0, 2, 2, 0], [3, 3, 3, 1]),
    "int array and slice": (slice(None, None, -1), [1, 1, 0]),
    "separated arrays": ([0, 0], slice(None), [1, 1]),
    "boolean mask": MASK,
    "boolean row mask and int array": (MASK[:, 0], [3, 3]),
    "ellipsis and int": (Ellipsis, 0),
}
SHAPES = {"separated arrays": (3, 2, 4)}


def _as_numpy_index(index):
    if isinstance(index, tuple):
        return tuple(_as_numpy_index(i) for i in index)
    return numpy.asarray(index) if isinstance(index, list) else index


@pytest.mark.parametrize("name", list(INDEXES))
def test_values_and_gradients(device, rng, name):
    index = INDEXES[name]
    x = rng.standard_normal(SHAPES.get(name, (3, 4)))
    y = fl.tensor(x, dtype="float64", device=device)[index]
    numpy.testing.assert_array_equal(y.numpy(), x[_as_numpy_index(index)])
    check_gradients(lambda t: t[index], [x], device=device)


def test_repeated_indices_accumulate(device):
    x = fl.tensor([10.0, 20.0, 30.0], requires_grad=True, device=device)
    y = x[[2, 0, 2, 2]]
    assert y.tolist() == [30.0, 10.0, 30.0, 30.0]
    (y * fl.tensor([1.0, 2.0, 3.0, 4.0], device=device)).sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 8.0] and x.grad.dtype == numpy.float32


def test_gather_rows_by_label_tensor(device):
    # The cross-entropy pattern: logits[arange(n), labels], the labels given as a tensor.
    logits = fl.tensor(numpy.arange(6.0).reshape(3, 2), requires_grad=True, device=device)
    labels = fl.tensor([1, 0, 1], device=device)
    picked = logits[numpy.arange(3), labels]
    assert picked.tolist() == [1.0, 2.0, 5.0]
    picked.sum().backward()
    assert logits.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]


def test_negative_step_slice_gradient_values(device):
    x = fl.tensor(numpy.arange(5.0), requires_grad=True, device=device)
    y = x[::-2]
    assert y.tolist() == [4.0, 2.0, 0.0]
    (y * fl.tensor([1.0, 2.0, 3.0], device=device)).sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 2.0, 0.0, 1.0]


def test_boolean_mask_tensor(device):
    x = fl.tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True, device=device)
    y = x[x > 0]
    assert y.tolist() == [1.0, 4.0]
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_single_element_and_iteration(device):
    x = fl.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    assert x[1, 0].item() == 3.0 and x[1, 0].shape == ()
    assert [row.tolist() for row in x] == [[1.0, 2.0], [3.0, 4.0]]


def test_bad_indexes(device):
    x = fl.tensor(numpy.ones((3, 4)), device=device)
    with pytest.raises(IndexError, match=r"getitem: index 5 is out of bounds .* \(indexing a tensor of shape \(3, 4\)\)"):
        x[5]
    with pytest.raises(IndexError, match=r"getitem: too many indices.*shape \(3, 4\)"):
        x[0, 0, 0]
    with pytest.raises(TypeError, match="getitem: index arrays must be of integer or boolean dtype; got float64"):
        x[numpy.array([0.0, 1.0])]
    with pytest.raises(TypeError, match="getitem: slice bounds must be integers or None; got 1.5"):
        x[1.5:]


def test_traced_getitem_survives_json(device):
    def fn(x, labels):
        return x[::-1, None, ..., labels][numpy.array([True, False, True])]

    x = numpy.arange(12.0, dtype=numpy.float32).reshape(3, 4)
    labels = numpy.array([3, 0, 0])
    graph = fl.trace(fn, x, labels)
    spec = json.loads(json.dumps(graph.to_dict()))
    replayed = Graph.from_dict(spec, graph.arrays)
    other = numpy.array([1, 1, 2])
    numpy.testing.assert_array_equal(replayed.run(x, other), x[::-1, None, ..., other][[True, False, True]])


def test_one_hot(device):
    y = fl.ops.one_hot(fl.tensor([[0, 2], [-1, 3]], device=device), depth=3)
    assert y.dtype == numpy.float32 and not y.requires_grad
    numpy.testing.assert_array_equal(y.numpy(), [[[1, 0, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]]])
    assert fl.ops.one_hot([1], 2, dtype="int32").tolist() == [[0, 1]]
    with pytest.raises(TypeError, match="one_hot: expected integer `indices`; got dtype float32"):
        fl.ops.one_hot(fl.tensor([1.0], device=device), 2)
    with pytest.raises(ValueError, match="one_hot: expected `depth` to be a positive integer; got 0"):
        fl.ops.one_hot([1], 0)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax(device, rng, axis, keepdims):
    data = rng.standard_normal((3, 4))
    x = fl.tensor(data, requires_grad=True, device=device)
    y = x.argmax(axis=axis, keepdims=keepdims)
    assert not y.requires_grad and y.dtype.kind == "i"
    numpy.testing.assert_array_equal(y.numpy(), numpy.argmax(data, axis=axis, keepdims=keepdims))


def test_argmax_errors(device):
    x = fl.tensor(numpy.ones((2, 3)), device=device)
    with pytest.raises(ValueError, match=r"argmax: `axis`=2 is out of range for a tensor of rank 2"):
        x.argmax(axis=2)
    with pytest.raises(ValueError, match=r"argmax: cannot take the argmax over an empty axis; got shape \(0, 3\)"):
        fl.ops.argmax(fl.tensor(numpy.ones((0, 3)), device=device), axis=0)
