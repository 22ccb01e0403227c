"""Tracing: run a function once and keep the primitives it ran as a replayable :class:`Graph`.

A Graph is data, not code: a list of nodes (primitive name, attrs, input and output names, output
shape and dtype), the input signature, and named arrays for parameters and constants. ``to_dict``
gives plain JSON plus those arrays, so SavedModel and ONNX export need no pickle, and loading
replays the graph through the primitive registry without running any code from the file.

A graph must replay correctly at any batch size, or refuse. Python code reads shapes as plain ints
(``x.reshape(x.shape[0], -1)``), so tracing generalises what it recorded:

* the batch size B is the leading size of the inputs; right after recording, the graph is run once
  more on the inputs with one row appended (batch B + 1: the *probe*). A value carries the batch
  when its leading size is B in the trace and B + 1 in the probe; any other size that differs
  depends on the batch in some other way. Each node stores its output shape with None there.
* a shape attr that names B for a batch-carrying value (reshape, broadcast_to, a slice stop on
  axis 0) is rewritten to follow the replay's batch (``reshape(2, -1)`` on (2, 5, 6) is recorded
  as ``reshape(-1, 30)``) before the probe runs it;
* when the probe fails (a constant built with the traced batch size, say), the graph is fixed to
  the traced batch size, with a :class:`TraceWarning` saying why, and ``run`` refuses other sizes;
* ``run`` checks every node's output against its recorded shape and raises ValueError naming the
  node rather than return a wrong shape.
"""
import json
import warnings

import numpy

from . import backend
from .config import _flag
from .primitive import get_primitive
from .tensor import Tensor, tensor

FORMAT_VERSION = 2
# Version 1 graphs have no node shapes: they load and replay, unchecked.
_READABLE_VERSIONS = (1, 2)


class TraceWarning(UserWarning):
    """A traced graph may not do what the traced function does on other inputs.

    Raised (as a warning) when a value computed from the traced inputs leaves the graph as Python
    data (``.item()``, ``bool()``, ``.numpy()``) and so comes back as a constant, and when a graph
    can only replay at the batch size it was traced at.
    """


def _jsonable(value):
    """Attrs in JSON form: tuples become lists, numpy scalars Python numbers."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, numpy.generic):
        return value.item()
    return value


def _from_json(value):
    """The inverse of _jsonable as primitives see it: JSON lists arrive as tuples."""
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _flatten_outputs(outputs):
    if isinstance(outputs, Tensor):
        return [("output", outputs)], "single"
    if isinstance(outputs, dict):
        return list(outputs.items()), "dict"
    if isinstance(outputs, (list, tuple)):
        return [(f"output_{i}", t) for i, t in enumerate(outputs)], "tuple"
    raise TypeError(f"trace: the function must return a Tensor, a tuple or a dict of Tensors; got {type(outputs).__name__}.")


def _node_json(node):
    node = dict(node, attrs=_jsonable(node["attrs"]))
    if node.get("shape") is not None:
        node["shape"] = list(node["shape"])
    return node


def _upload(xp, array):
    """``array`` in the array module ``xp`` (a host-to-device copy for cupy; free for numpy)."""
    return xp.asarray(array)


def _show_shape(shape, batch):
    """A recorded shape for messages: the batch dimension is written ``batch``, other free sizes ``*``."""
    if shape is None:
        return "unrecorded"
    dims = ["batch" if i == 0 and batch else ("*" if n is None else str(n)) for i, n in enumerate(shape)]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class _Step:
    """One node of a Graph, ready to run: its primitive's forward looked up once, its checks precomputed."""

    __slots__ = ("forward", "op", "inputs", "attrs", "output", "shape", "dtype", "batch", "frees", "_exact", "_tail")

    def __init__(self, node, frees):
        self.forward = get_primitive(node["op"]).forward  # also fails at load time on unknown ops
        self.op = node["op"]
        self.inputs = tuple(node["inputs"])
        self.attrs = node["attrs"]
        self.output = node["output"]
        shape = node.get("shape")
        self.shape = None if shape is None else tuple(shape)
        self.dtype = None if node.get("dtype") is None else numpy.dtype(node["dtype"])
        self.batch = bool(node.get("batch", False))
        self.frees = frees
        # The common cases compare whole tuples (a per-dimension loop costs more than most small ops).
        known = self.shape is not None and None not in self.shape[1:]
        self._exact = self.shape if known and not self.batch and (not self.shape or self.shape[0] is not None) else None
        self._tail = self.shape[1:] if known and self.batch else None

    def check(self, output, batch):
        """ValueError unless ``output`` has the recorded shape (and batch size) and dtype."""
        expected = self.shape
        got = output.shape
        if self._exact is not None:
            fits = got == self._exact
        elif self._tail is not None and batch is not None:
            fits = got == (batch,) + self._tail
        else:
            fits = len(got) == len(expected) and all(e is None or e == n for e, n in zip(expected, got))
            if fits and self.batch and batch is not None and got[0] != batch:
                fits = False
        if fits and (self.dtype is None or output.dtype == self.dtype):
            return
        raise ValueError(
            f"Graph.run: node {self.output!r} ({self.op}) expected an output of shape "
            f"{_show_shape(expected, self.batch)} and dtype {self.dtype}"
            f"{f' with batch={batch}' if self.batch else ''}; got shape {tuple(got)} and dtype {output.dtype}. "
            "The traced function does not generalise to these inputs; trace it at this batch size or compute "
            "the batch-dependent sizes with -1 instead of Python ints."
        )


class Graph:
    """A traced computation: replay it with :meth:`run`, store it with :meth:`to_dict`.

    Treat a Graph as immutable: ``run`` uses a plan built from ``nodes`` when the Graph is made. The
    arrays may be replaced (``graph.arrays["dense/kernel"] = new``); ``run`` then uploads the new one.

    Attributes
    ----------
    inputs : list of dict
        ``{"name", "dtype", "shape", "batch"}`` per positional input; for a batch input (``batch``
        true) the leading dimension is None. Inputs whose leading size differed from the first
        input's when traced keep their full shape.
    nodes : list of dict
        ``{"op", "inputs", "attrs", "output", "shape", "dtype", "batch"}`` in execution order, only
        those that reach an output. ``shape`` has None where the size depends on the batch; ``batch``
        says the leading dimension is the batch size itself.
    outputs : list of str
        Names of the output values (keys of a dict output, else ``output`` / ``output_<i>``).
    arrays : dict of str to ndarray
        Parameters and constants the nodes read.
    parameters : list of str
        The names in ``arrays`` that were trainable when traced.
    fixed_batch : str or None
        Why the graph only replays at its traced batch size (its batch inputs then have a fixed
        leading size); None when it replays at any batch size.
    """

    def __init__(self, inputs, nodes, outputs, arrays, parameters=(), output_kind="tuple", output_refs=None,
                 fixed_batch=None):
        self.inputs = inputs
        self.nodes = nodes
        self.outputs = outputs
        self.arrays = arrays
        self.parameters = list(parameters)
        self.output_kind = output_kind
        self.output_refs = output_refs if output_refs is not None else list(outputs)
        self.fixed_batch = fixed_batch
        self._plan = self._compile()
        self._device_arrays = {}  # array module -> {name: (source array, array on that module)}

    def _compile(self):
        last_use = {}
        for index, node in enumerate(self.nodes):
            for ref in node["inputs"]:
                last_use[ref] = index
        kept = set(self.output_refs) | set(self.arrays) | {spec["name"] for spec in self.inputs}
        frees = [[] for _ in self.nodes]
        for ref, index in last_use.items():
            if ref not in kept:  # intermediates die once read: a big batch needs less peak memory
                frees[index].append(ref)
        return [_Step(node, tuple(free)) for node, free in zip(self.nodes, frees)]

    def _arrays_on(self, xp):
        """The graph's arrays in module ``xp``, uploaded once and again only for a replaced array."""
        cache = self._device_arrays.setdefault(xp, {})
        out = {}
        for name, source in self.arrays.items():
            hit = cache.get(name)
            if hit is None or hit[0] is not source:
                hit = cache[name] = (source, _upload(xp, source))
            out[name] = hit[1]
        if len(cache) > len(out):
            for name in set(cache) - set(out):
                del cache[name]
        return out

    def run(self, *arrays):
        """Evaluate the graph on input arrays; returns arrays in the structure the function returned.

        Raises ValueError when an input does not match the signature, when batch inputs differ in
        batch size, or when a node's output does not have its recorded shape (the traced function
        does not generalise to these inputs).
        """
        if len(arrays) != len(self.inputs):
            raise ValueError(f"Graph.run: expected {len(self.inputs)} inputs {[i['name'] for i in self.inputs]}; got {len(arrays)}.")
        xp = backend.array_module(arrays[0]) if arrays else numpy
        values = self._arrays_on(xp)
        batch, batch_input = None, None
        for spec, array in zip(self.inputs, arrays):
            name = spec["name"]
            array = xp.asarray(array, dtype=spec["dtype"])
            expected = spec["shape"]
            if array.ndim != len(expected) or any(e is not None and e != n for e, n in zip(expected, array.shape)):
                why = ""
                if self.fixed_batch:
                    why = f" The graph only replays at its traced batch size: {self.fixed_batch}"
                raise ValueError(f"Graph.run: input {name!r} expected shape {tuple(expected)}; got {array.shape}.{why}")
            if spec.get("batch"):
                if batch is None:
                    batch, batch_input = array.shape[0], name
                elif array.shape[0] != batch:
                    raise ValueError(
                        f"Graph.run: inputs {batch_input!r} and {name!r} must have the same batch size (leading "
                        f"dimension); got {batch} and {array.shape[0]}."
                    )
            values[name] = array
        for step in self._plan:
            try:
                output, _ = step.forward(xp, *[values[ref] for ref in step.inputs], **step.attrs)
            except (ValueError, IndexError, TypeError) as error:
                shapes = [tuple(values[ref].shape) for ref in step.inputs]
                raise ValueError(
                    f"Graph.run: node {step.output!r} ({step.op}) failed on inputs of shapes {shapes}: {error}"
                ) from error
            if step.shape is not None:
                step.check(output, batch)
            values[step.output] = output
            for ref in step.frees:
                del values[ref]
        results = [values[ref] for ref in self.output_refs]
        if self.output_kind == "single":
            return results[0]
        if self.output_kind == "dict":
            return dict(zip(self.outputs, results))
        return tuple(results)

    def to_dict(self):
        """The graph as plain JSON data (the arrays stay in ``self.arrays``)."""
        spec = {
            "format_version": FORMAT_VERSION,
            "inputs": [dict(spec, shape=list(spec["shape"])) for spec in self.inputs],
            "nodes": [_node_json(node) for node in self.nodes],
            "outputs": self.outputs,
            "output_refs": self.output_refs,
            "output_kind": self.output_kind,
            "parameters": self.parameters,
            "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in self.arrays.items()},
            "fixed_batch": self.fixed_batch,
        }
        json.dumps(spec)  # a non-JSON attr is a bug in the primitive that recorded it: fail here, loudly
        return spec

    @classmethod
    def from_dict(cls, spec, arrays):
        """Rebuild a graph from :meth:`to_dict` output and its arrays; runs no code from the data.

        Reads format versions 1 (no node shapes: replayed without shape checks) and 2.
        """
        version = spec.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"Graph.from_dict: expected format_version in {_READABLE_VERSIONS}; got {version!r}.")
        missing = set(spec["arrays"]) - set(arrays)
        if missing:
            raise ValueError(f"Graph.from_dict: arrays missing for {sorted(missing)}.")
        nodes = []
        for n in spec["nodes"]:
            node = {"op": n["op"], "inputs": list(n["inputs"]), "attrs": _from_json(n["attrs"]), "output": n["output"]}
            if n.get("shape") is not None:
                node.update(shape=list(n["shape"]), dtype=n["dtype"], batch=bool(n.get("batch", False)))
            nodes.append(node)
        inputs = [dict(i, shape=list(i["shape"])) for i in spec["inputs"]]
        return cls(
            inputs, nodes, list(spec["outputs"]), {k: arrays[k] for k in spec["arrays"]},
            spec.get("parameters", ()), spec.get("output_kind", "tuple"), spec.get("output_refs"),
            spec.get("fixed_batch"),
        )


# -- recording ----------------------------------------------------------------------------------------
class _Tape(list):
    """The list ``primitive.apply`` appends (node, result) to while tracing, which also knows which
    tensors depend on the traced inputs (for the frozen-value warning)."""

    def __init__(self, placeholders):
        super().__init__()
        self.dependent = {id(p) for p in placeholders}  # the tape keeps every tensor alive: ids stay unique

    def append(self, entry):
        node, result = entry
        dependent = self.dependent
        for t in node.inputs:
            if id(t) in dependent:
                dependent.add(id(result))
                break
        super().append(entry)

    def note_frozen(self, t, how):
        """Called by Tensor when ``how`` (``item()``, ``bool()``, ...) reads the value of ``t``."""
        if id(t) in self.dependent:
            warnings.warn(
                f"fl.trace: {how} read the value of a tensor computed from the traced inputs. The graph "
                "records primitives only, so this value (and any Python branch taken on it) is frozen into the "
                "graph as a constant and replays ignore new inputs here. Keep the computation in tensor ops.",
                TraceWarning, stacklevel=4,
            )


def _reaching(tape, outputs):
    """The tape entries whose results reach ``outputs``, in recording order."""
    needed = {id(t) for t in outputs}
    kept = []
    for node, result in reversed(tape):
        if id(result) in needed:
            kept.append((node, result))
            needed.update(id(t) for t in node.inputs)
    kept.reverse()
    return kept


# -- batch generalisation -------------------------------------------------------------------------------
# A rule sees a node whose attrs may name the traced batch size B and rewrites it to follow the
# replay's batch. It returns True when it relied on a size being B (ambiguous when B is 1).
def _reshape_rule(node, batch, in_shapes, carries, out_shape, source):
    shape = node["attrs"]["shape"]
    if carries[0] and shape and shape[0] == batch and 0 not in out_shape[1:]:
        node["attrs"] = dict(node["attrs"], shape=(-1,) + tuple(out_shape[1:]))
        return True
    return False


def _broadcast_rule(node, batch, in_shapes, carries, out_shape, source):
    shape = node["attrs"]["shape"]
    if not shape or shape[0] != batch or source is None:
        return False
    # broadcast_to takes its leading size from an extra input: the operand itself when it carries
    # the batch on the same axis, else a batch input of the graph (a constant broadcast to the batch).
    aligned = carries[0] and len(in_shapes[0]) == len(shape)
    node["inputs"] = node["inputs"] + [node["inputs"][0] if aligned else source]
    return True


def _getitem_rule(node, batch, in_shapes, carries, out_shape, source):
    if not carries[0]:
        return False
    index = list(node["attrs"]["index"])
    position = 0
    while position < len(index) and index[position] is None:  # x[None, :B] still slices axis 0
        position += 1
    if position == len(index):
        return False
    item = index[position]
    if not (isinstance(item, tuple) and item[0] == "slice" and item[2] == batch and (item[3] or 1) > 0):
        return False
    index[position] = ("slice", item[1], None, item[3])  # x[:B] keeps every row: x[:] at any batch
    node["attrs"] = dict(node["attrs"], index=tuple(index))
    return True


def _squeeze_rule(node, batch, in_shapes, carries, out_shape, source):
    if node["attrs"]["axis"] is None:  # "every size-1 axis" would drop the batch axis of a batch of 1
        node["attrs"] = dict(node["attrs"], axis=tuple(i for i, n in enumerate(in_shapes[0]) if n == 1))
    return False


_BATCH_RULES = {
    "reshape": _reshape_rule, "broadcast_to": _broadcast_rule, "getitem": _getitem_rule, "squeeze": _squeeze_rule,
}


class _Probe:
    """Runs the recorded nodes at batch B + 1 to find which sizes follow the batch (see the module doc)."""

    def __init__(self, batch, values, carrying, traced, source):
        self.batch = batch
        self.values = values  # ref -> array at batch B + 1
        self.carrying = carrying  # refs whose leading dimension is the batch
        self.traced = traced  # ref -> (shape, dtype) while tracing
        self.source = source
        self.fixed = None
        self.assumed_batch = []  # nodes whose rewrite took a size equal to B for the batch

    def node(self, node, out_shape):
        """Generalise ``node``'s attrs; until the probe fails, run it at batch B + 1 and record its shape."""
        rule = _BATCH_RULES.get(node["op"])
        if rule is not None and self.batch is not None:
            in_shapes = [self.traced[ref][0] for ref in node["inputs"]]
            carries = [ref in self.carrying for ref in node["inputs"]]
            if rule(node, self.batch, in_shapes, carries, out_shape, self.source):
                self.assumed_batch.append(node["output"])
        if self.fixed is not None or self.batch is None:
            return
        inputs = [self.values[ref] for ref in node["inputs"]]
        xp = backend.array_module(inputs[0]) if inputs else numpy
        try:
            with numpy.errstate(all="ignore"):  # the same values as the trace: its warnings were seen once
                probe, _ = get_primitive(node["op"]).forward(xp, *inputs, **node["attrs"])
        except Exception as error:  # noqa: BLE001 - any failure means: not at another batch size
            self.fixed = f"node {node['output']!r} ({node['op']}) fails at batch size {self.batch + 1}: {error}"
            return
        if probe.ndim != len(out_shape):
            self.fixed = (
                f"node {node['output']!r} ({node['op']}) gives rank {len(out_shape)} at batch size {self.batch} "
                f"but rank {probe.ndim} at batch size {self.batch + 1}"
            )
            return
        self.values[node["output"]] = probe
        carries = bool(out_shape) and out_shape[0] == self.batch and probe.shape[0] == self.batch + 1
        if carries:
            self.carrying.add(node["output"])
        node["shape"] = [n if n == p else None for n, p in zip(out_shape, probe.shape)]
        node["batch"] = carries

    def free(self, refs):
        for ref in refs:
            if ref != self.source:  # a later broadcast_to may still take the batch size from it
                self.values.pop(ref, None)


def trace(fn, *example_inputs, input_names=None):
    """Run ``fn(*inputs)`` once on placeholders and record it as a :class:`Graph`.

    Tensors that ``fn`` reads but did not compute become named arrays of the graph: those that
    require grad are its parameters (named by their ``.name`` when set), the rest constants. Nodes
    that do not reach an output are left out. The leading dimension of the inputs is the batch: the
    graph replays at any batch size, or (with a :class:`TraceWarning`) only at the traced one, and
    ``Graph.run`` refuses inputs it cannot replay correctly (see the module docstring). Trace with a
    batch of at least 2: at batch 1 a size-1 dimension and the batch cannot be told apart.

    >>> import flowlearn as fl, numpy as np
    >>> w = fl.tensor(np.ones((3, 2)), requires_grad=True, name="w")
    >>> graph = fl.trace(lambda x: fl.ops.relu(x @ w), np.ones((4, 3)))
    >>> graph.run(np.ones((5, 3))).shape
    (5, 2)
    >>> flat = fl.trace(lambda x: x.reshape(x.shape[0], -1), np.ones((2, 5, 6)))
    >>> flat.run(np.ones((7, 5, 6))).shape  # the traced reshape(2, -1) is stored as reshape(-1, 30)
    (7, 30)
    """
    placeholders = [
        Tensor._from_array(x.data, False) if isinstance(x, Tensor) else tensor(x) for x in example_inputs
    ]
    names = list(input_names) if input_names is not None else [f"input_{i}" for i in range(len(placeholders))]
    if len(names) != len(placeholders):
        raise ValueError(f"trace: expected {len(placeholders)} `input_names`, one per input; got {len(names)}.")
    tape = _Tape(placeholders)
    with _flag("tape", tape), _flag("grad_enabled", False):
        outputs = fn(*placeholders)
    flat_outputs, kind = _flatten_outputs(outputs)
    entries = _reaching(tape, [t for _, t in flat_outputs])

    # The batch size: the leading size of the first input; inputs sharing it carry the batch.
    batch = next((p.shape[0] for p in placeholders if p.ndim), None)
    carries = [p.ndim > 0 and p.shape[0] == batch for p in placeholders]
    refs = {id(p): n for p, n in zip(placeholders, names)}
    traced = {n: (p.shape, p.dtype) for p, n in zip(placeholders, names)}
    probe_values = {
        n: (backend.array_module(p.data).concatenate([p.data, p.data[:1]]) if c else p.data)
        for p, n, c in zip(placeholders, names, carries)
    }
    source = next((n for n, c in zip(names, carries) if c), None)
    probe = _Probe(batch, probe_values, {n for n, c in zip(names, carries) if c}, traced, source)

    arrays, parameters, nodes, used_names = {}, [], [], set(names)

    def external(t):
        base = t.name or ("param" if t.requires_grad else "const")
        name, k = base, 0
        while name in used_names:
            k += 1
            name = f"{base}_{k}"
        used_names.add(name)
        arrays[name] = backend.to_numpy(t.data)
        if t.requires_grad:
            parameters.append(name)
        refs[id(t)] = name
        traced[name] = (t.shape, t.dtype)
        probe_values[name] = t.data
        return name

    last_use = {}
    for index, (node, _) in enumerate(entries):
        for t in node.inputs:
            last_use[id(t)] = index
    for _, t in flat_outputs:
        last_use[id(t)] = len(entries)
    for index, (node, result) in enumerate(entries):
        inputs = [refs[id(t)] if id(t) in refs else external(t) for t in node.inputs]
        output = f"{node.primitive.name}_{index}"
        refs[id(result)] = output
        traced[output] = (result.shape, result.dtype)
        record = {"op": node.primitive.name, "inputs": inputs, "attrs": dict(node.attrs), "output": output,
                  "shape": list(result.shape), "dtype": str(result.dtype), "batch": False}
        probe.node(record, result.shape)
        probe.free([refs[id(t)] for t in node.inputs if last_use[id(t)] == index])
        nodes.append(record)
    output_refs = [refs[id(t)] if id(t) in refs else external(t) for _, t in flat_outputs]

    if batch == 1 and probe.assumed_batch:
        warnings.warn(
            f"fl.trace: traced at batch size 1, so the size-1 leading dimension in {probe.assumed_batch} was "
            "taken for the batch size. Trace with a batch of 2 or more to tell them apart.",
            TraceWarning, stacklevel=2,
        )
    if probe.fixed is not None:
        warnings.warn(
            f"fl.trace: the graph only replays at the traced batch size {batch}: {probe.fixed}. Sizes taken from "
            "a tensor's shape (constants built with the batch size, say) are frozen; -1 in reshape keeps them free.",
            TraceWarning, stacklevel=2,
        )
        for record in nodes:
            record["shape"], record["batch"] = list(traced[record["output"]][0]), False
    free_batch = probe.fixed is None
    input_specs = [
        {"name": n, "dtype": str(p.dtype), "batch": bool(c and free_batch),
         "shape": [None if i == 0 and c and free_batch else d for i, d in enumerate(p.shape)]}
        for n, p, c in zip(names, placeholders, carries)
    ]
    return Graph(input_specs, nodes, [n for n, _ in flat_outputs], arrays, parameters, kind, output_refs,
                 probe.fixed)
