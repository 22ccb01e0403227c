import json

import numpy
import pytest

import flowlearn as fl
from flowlearn.core import Graph, ops


def _mlp(rng):
    w1 = fl.tensor(rng.standard_normal((4, 8)), requires_grad=True, name="dense/kernel")
    b1 = fl.tensor(rng.standard_normal(8), requires_grad=True, name="dense/bias")
    w2 = fl.tensor(rng.standard_normal((8, 3)), requires_grad=True)

    def model(x):
        hidden = ops.relu(x @ w1 + b1)
        return ops.softmax(hidden @ w2 * 0.5)

    return model


def test_traced_graph_reproduces_eager_output_exactly(rng):
    model = _mlp(rng)
    x = rng.standard_normal((5, 4)).astype(numpy.float32)
    graph = fl.trace(model, x)
    with fl.no_grad():
        eager = model(fl.tensor(x)).numpy()
    numpy.testing.assert_array_equal(graph.run(x), eager)
    assert {"dense/kernel", "dense/bias", "param"} <= set(graph.parameters)
    assert [n["op"] for n in graph.nodes] == ["matmul", "add", "relu", "matmul", "mul", "softmax"]


def test_graph_round_trips_through_plain_json(rng):
    model = _mlp(rng)
    x = rng.standard_normal((5, 4)).astype(numpy.float32)
    graph = fl.trace(model, x)
    spec = json.loads(json.dumps(graph.to_dict()))
    arrays = {k: v.copy() for k, v in graph.arrays.items()}
    restored = Graph.from_dict(spec, arrays)
    numpy.testing.assert_array_equal(restored.run(x), graph.run(x))
    other_batch = rng.standard_normal((7, 4)).astype(numpy.float32)
    numpy.testing.assert_array_equal(restored.run(other_batch), graph.run(other_batch))


def test_trace_keeps_output_structure(rng):
    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    graph = fl.trace(lambda t: {"double": t * 2, "total": t.sum(axis=1)}, x)
    out = Graph.from_dict(graph.to_dict(), graph.arrays).run(x)
    numpy.testing.assert_allclose(out["double"], x * 2)
    numpy.testing.assert_allclose(out["total"], x.sum(axis=1), rtol=1e-6)
    pair = fl.trace(lambda t: (t + 1, t - 1), x).run(x)
    assert isinstance(pair, tuple) and len(pair) == 2


def test_graph_run_checks_its_inputs(rng):
    graph = fl.trace(lambda t: t * 2, numpy.ones((2, 3), dtype=numpy.float32))
    with pytest.raises(ValueError, match=r"expected shape \(None, 3\)"):
        graph.run(numpy.ones((2, 4)))
    with pytest.raises(ValueError, match="expected 1 inputs"):
        graph.run()


def test_loading_rejects_unknown_primitives_and_versions(rng):
    graph = fl.trace(lambda t: t * 2, numpy.ones((2, 3), dtype=numpy.float32))
    spec = graph.to_dict()
    spec["nodes"][0]["op"] = "os.system"
    with pytest.raises(ValueError, match="Unknown primitive"):
        Graph.from_dict(spec, graph.arrays)
    spec = graph.to_dict()
    spec["format_version"] = 99
    with pytest.raises(ValueError, match="format_version"):
        Graph.from_dict(spec, graph.arrays)


def test_tracing_records_under_no_grad_and_leaves_no_tape_behind(rng):
    x = numpy.ones((2, 2), dtype=numpy.float32)
    with fl.no_grad():
        graph = fl.trace(lambda t: t * 3, x)
    assert len(graph.nodes) == 1
    from flowlearn.core.config import modes

    assert modes.tape is None
