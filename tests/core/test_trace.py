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


# -- batch sizes: generalise or refuse, never a wrong shape -------------------------------------------
def _eager(fn, *arrays):
    with fl.no_grad():
        out = fn(*[fl.tensor(a) for a in arrays])
    return out.numpy()


def test_reshape_with_the_traced_batch_size_replays_at_other_batch_sizes(rng):
    fn = lambda t: t.reshape(t.shape[0], -1)  # noqa: E731 - the issue's example
    graph = fl.trace(fn, rng.standard_normal((2, 5, 6)))
    (node,) = graph.nodes
    assert node["attrs"]["shape"] == (-1, 30)
    assert node["shape"] == [None, 30] and node["batch"] and node["dtype"] == "float32"
    for n in (1, 5):
        x = rng.standard_normal((n, 5, 6)).astype(numpy.float32)
        numpy.testing.assert_array_equal(graph.run(x), _eager(fn, x))


def test_slice_stops_broadcasts_and_squeeze_follow_the_batch(rng):
    bias = fl.tensor(rng.standard_normal(4))

    def fn(t):
        rows = t[: t.shape[0]]                               # a slice stop equal to the batch size
        state = fl.ops.broadcast_to(bias, (t.shape[0], 4))   # a constant broadcast to the batch
        same = fl.ops.broadcast_to(t[:, :1], (t.shape[0], 4))  # a batch operand broadcast along axis 1
        return (rows * 2 + state + same)[:, None].squeeze()  # squeeze() must keep a batch of 1

    graph = fl.trace(fn, rng.standard_normal((3, 4)))
    assert all(node["attrs"]["shape"] == (3, 4) for node in graph.nodes if node["op"] == "broadcast_to")
    assert [len(node["inputs"]) for node in graph.nodes if node["op"] == "broadcast_to"] == [2, 2]
    for n in (1, 3, 6):
        x = rng.standard_normal((n, 4)).astype(numpy.float32)
        got = graph.run(x)
        assert got.shape == (n, 4)
        numpy.testing.assert_array_equal(got, _eager(fn, x).reshape(n, 4))  # eager squeezes a batch of 1 away


def test_broadcast_to_with_a_batch_source_keeps_its_gradient(rng):
    from flowlearn.core.ops.shape import BroadcastTo

    x = rng.standard_normal((1, 3)).astype(numpy.float32)
    out, saved = BroadcastTo.forward(numpy, x, numpy.empty((5, 7)), shape=(2, 3))
    assert out.shape == (5, 3)
    grad = BroadcastTo.backward(numpy, numpy.ones((5, 3), numpy.float32), saved, (True, False), shape=(2, 3))
    assert grad[1] is None
    numpy.testing.assert_array_equal(grad[0], numpy.full((1, 3), 5.0))


def test_a_graph_that_cannot_generalise_is_fixed_to_its_batch_size_and_refuses_others(rng):
    fn = lambda t: t * fl.tensor(numpy.arange(6.0).reshape(t.shape))  # noqa: E731 - a constant sized by the batch
    x = rng.standard_normal((2, 3)).astype(numpy.float32)
    with pytest.warns(fl.core.TraceWarning, match=r"only replays at the traced batch size 2: node 'mul_0' \(mul\)"):
        graph = fl.trace(fn, x)
    assert "mul_0" in graph.fixed_batch
    assert graph.inputs[0]["shape"] == [2, 3] and not graph.inputs[0]["batch"]
    restored = Graph.from_dict(json.loads(json.dumps(graph.to_dict())), graph.arrays)
    for g in (graph, restored):
        numpy.testing.assert_array_equal(g.run(x), _eager(fn, x))
        with pytest.raises(ValueError, match=r"input 'input_0' expected shape \(2, 3\); got \(5, 3\)\. .*traced batch "
                                             r"size: node 'mul_0' \(mul\) fails at batch size 3"):
            g.run(rng.standard_normal((5, 3)))


def test_replay_refuses_a_node_whose_shape_breaks_the_batch(rng):
    fn = lambda t: t[t[:, 0] > 0] * 2  # noqa: E731 - a data-dependent row count, traced with every row kept
    x = numpy.abs(rng.standard_normal((3, 2))).astype(numpy.float32) + 1
    graph = fl.trace(fn, x)
    (masked,) = [node for node in graph.nodes if node["op"] == "getitem" and len(node["inputs"]) == 2]
    assert masked["shape"] == [None, 2] and masked["batch"]
    numpy.testing.assert_array_equal(graph.run(-x[:1] + x[:1] * 3), _eager(fn, x[:1] * 2))
    dropped = x.copy()
    dropped[1, 0] = -1
    with pytest.raises(ValueError, match=r"node 'getitem_\d' \(getitem\) expected an output of shape \(batch, 2\) "
                                         r"and dtype float32 with batch=3; got shape \(2, 2\)"):
        graph.run(dropped)


def test_batch_inputs_must_share_one_batch_size(rng):
    graph = fl.trace(lambda a, b: a + b, numpy.ones((2, 3), numpy.float32), numpy.ones((2, 3), numpy.float32))
    assert [i["batch"] for i in graph.inputs] == [True, True]
    assert graph.run(numpy.ones((4, 3)), numpy.ones((4, 3))).shape == (4, 3)
    with pytest.raises(ValueError, match=r"inputs 'input_0' and 'input_1' must have the same batch size .* 4 and 1"):
        graph.run(numpy.ones((4, 3)), numpy.ones((1, 3)))
    table = fl.trace(lambda ids, t: t[ids], numpy.array([0, 2]), numpy.ones((5, 3), numpy.float32))
    assert table.inputs[1]["shape"] == [5, 3] and not table.inputs[1]["batch"]  # not the batch's leading size


def test_tracing_at_batch_size_one_warns_when_it_guesses(rng):
    with pytest.warns(fl.core.TraceWarning, match="traced at batch size 1"):
        graph = fl.trace(lambda t: t.reshape(t.shape[0], -1), numpy.ones((1, 2, 3), numpy.float32))
    assert graph.run(numpy.ones((4, 2, 3))).shape == (4, 6)


# -- values frozen into a trace -----------------------------------------------------------------------
@pytest.mark.parametrize("how, read", [
    (r"item\(\)", lambda t: t.sum().item()),
    (r"bool\(\)", lambda t: bool(t.sum() > 0)),
    (r"numpy\(\)", lambda t: t.numpy()),
    (r"numpy.asarray\(\)", lambda t: numpy.asarray(t)),
])
def test_reading_a_traced_value_warns_that_it_is_frozen(how, read):
    w = fl.tensor(numpy.ones(3), requires_grad=True)

    def fn(t):
        read(w)  # a parameter's value is a constant anyway: no warning
        read(t * 1)
        return t * 2

    with pytest.warns(fl.core.TraceWarning, match=how + r" read the value .* frozen into the graph") as record:
        fl.trace(fn, numpy.ones(3, numpy.float32))
    assert len(record) == 1 and record[0].filename == __file__  # points at the user's line
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read(fl.tensor(numpy.ones(3)) * 1)  # outside a trace: silent


# -- pruning, JSON, device cache ----------------------------------------------------------------------
def test_nodes_and_arrays_that_reach_no_output_are_pruned(rng):
    used = fl.tensor(rng.standard_normal(3), requires_grad=True, name="used")
    unused = fl.tensor(rng.standard_normal(3), requires_grad=True, name="unused")

    def fn(t):
        (t * unused).exp()  # computed, never returned
        return t + used

    graph = fl.trace(fn, numpy.ones((2, 3), numpy.float32))
    assert [node["op"] for node in graph.nodes] == ["add"]
    assert set(graph.arrays) == {"used"} and graph.parameters == ["used"]


def test_json_round_trip_keeps_shapes_and_reads_version_1(rng):
    model = _mlp(rng)
    x = rng.standard_normal((3, 4)).astype(numpy.float32)
    graph = fl.trace(model, x)
    spec = json.loads(json.dumps(graph.to_dict()))
    assert spec["format_version"] == 2 and spec["fixed_batch"] is None
    restored = Graph.from_dict(spec, graph.arrays)
    assert [(n["shape"], n["dtype"], n["batch"]) for n in restored.nodes] == [
        (n["shape"], n["dtype"], n["batch"]) for n in graph.nodes]
    assert restored.nodes[0]["shape"] == [None, 8] and restored.nodes[0]["batch"]
    spec["nodes"][0]["shape"] = [None, 9]  # the recorded shape is checked on replay
    with pytest.raises(ValueError, match=r"node 'matmul_0' \(matmul\) expected an output of shape \(batch, 9\)"):
        Graph.from_dict(spec, graph.arrays).run(x)
    totals = fl.trace(lambda t: t.sum(axis=0), x).to_dict()
    assert totals["nodes"][0]["shape"] == [4] and not totals["nodes"][0]["batch"]
    totals["nodes"][0]["shape"] = [5]
    with pytest.raises(ValueError, match=r"node 'sum_0' \(sum\) expected an output of shape \(5,\) .* shape \(4,\)"):
        Graph.from_dict(totals, {}).run(x)
    old = graph.to_dict()  # a graph saved before shapes were recorded
    old["format_version"] = 1
    old["nodes"] = [{k: n[k] for k in ("op", "inputs", "attrs", "output")} for n in old["nodes"]]
    del old["fixed_batch"]
    for i in old["inputs"]:
        del i["batch"]
    other = rng.standard_normal((6, 4)).astype(numpy.float32)
    numpy.testing.assert_array_equal(Graph.from_dict(old, graph.arrays).run(other), graph.run(other))


def test_parameters_are_uploaded_once_and_again_when_replaced(rng, monkeypatch):
    import importlib

    trace_module = importlib.import_module("flowlearn.core.trace")  # fl.core.trace is the function
    uploads = []
    real = trace_module._upload
    monkeypatch.setattr(trace_module, "_upload", lambda xp, array: uploads.append(array) or real(xp, array))
    graph = fl.trace(_mlp(rng), rng.standard_normal((2, 4)).astype(numpy.float32))
    x = rng.standard_normal((5, 4)).astype(numpy.float32)
    first = graph.run(x)
    count = len(graph.arrays)
    assert len(uploads) == count == 4  # three parameters and the constant 0.5
    numpy.testing.assert_array_equal(graph.run(x), first)
    assert len(uploads) == count  # the second run reuses them
    graph.arrays["dense/bias"] = graph.arrays["dense/bias"] + 100
    assert not numpy.array_equal(graph.run(x), first)
    assert len(uploads) == count + 1 and uploads[-1] is graph.arrays["dense/bias"]


def test_parameters_stay_on_the_device_between_runs(device, rng):
    w = fl.tensor(rng.standard_normal((4, 2)), requires_grad=True, name="w", device=device)
    x = fl.tensor(rng.standard_normal((3, 4)), device=device)
    graph = fl.trace(lambda t: t @ w, x)
    graph.run(x.data)
    xp = fl.backend.array_module(x.data)
    cached = graph._device_arrays[xp]["w"][1]
    assert fl.backend.array_module(cached) is xp
    graph.run(x.data)
    assert graph._device_arrays[xp]["w"][1] is cached


def test_a_size_equal_to_the_batch_by_chance_is_not_taken_for_it(rng):
    # Traced at batch 2, batch_norm's moments have shape (2, channels) (mean and variance) and t.T @ t
    # has shape (4, 4) at batch 4: only sizes that follow the batch are marked as batch.
    gamma = fl.tensor(rng.standard_normal(4))

    def fn(t):
        return fl.ops.batch_norm(t, gamma, None, None, None, training=True), t.T @ t

    graph = fl.trace(fn, rng.standard_normal((2, 4)))
    moments = next(n for n in graph.nodes if n["op"] == "batch_moments")
    assert moments["shape"] == [2, 4] and not moments["batch"]
    gram = fl.trace(lambda t: t.T @ t, rng.standard_normal((4, 4)))
    assert [n["shape"] for n in gram.nodes] == [[4, None], [4, 4]] and not any(n["batch"] for n in gram.nodes)
    for n in (1, 5):
        x = rng.standard_normal((n, 4)).astype(numpy.float32)
        with fl.no_grad():
            expected = [y.numpy() for y in fn(fl.tensor(x))]
        for got, want in zip(graph.run(x), expected):
            numpy.testing.assert_array_equal(got, want)
        numpy.testing.assert_array_equal(gram.run(x), x.T @ x)
