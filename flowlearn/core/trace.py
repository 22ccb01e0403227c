"""Tracing: run a function once and keep the primitives it ran as a replayable :class:`Graph`.

A Graph is data, not code: a list of nodes (primitive name, attrs, input and output names), the
input signature, and named arrays for parameters and constants. ``to_dict`` gives plain JSON plus
those arrays, so SavedModel and ONNX export need no pickle, and loading replays the graph through
the primitive registry without running any code from the file.
"""
import json

import numpy

from . import backend
from .config import _flag
from .primitive import get_primitive
from .tensor import Tensor, tensor

FORMAT_VERSION = 1


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


class Graph:
    """A traced computation: replay it with :meth:`run`, store it with :meth:`to_dict`.

    Attributes
    ----------
    inputs : list of dict
        ``{"name", "dtype", "shape"}`` per positional input; the leading (batch) dimension is None.
    nodes : list of dict
        ``{"op", "inputs", "attrs", "output"}`` in execution order.
    outputs : list of str
        Names of the output values (keys of a dict output, else ``output`` / ``output_<i>``).
    arrays : dict of str to ndarray
        Parameters and constants the nodes read.
    parameters : list of str
        The names in ``arrays`` that were trainable when traced.
    """

    def __init__(self, inputs, nodes, outputs, arrays, parameters=(), output_kind="tuple", output_refs=None):
        self.inputs = inputs
        self.nodes = nodes
        self.outputs = outputs
        self.arrays = arrays
        self.parameters = list(parameters)
        self.output_kind = output_kind
        self.output_refs = output_refs if output_refs is not None else list(outputs)
        for node in nodes:
            get_primitive(node["op"])  # fail at load time, not halfway through a run

    def run(self, *arrays):
        """Evaluate the graph on input arrays; returns arrays in the structure the function returned."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"Graph.run: expected {len(self.inputs)} inputs {[i['name'] for i in self.inputs]}; got {len(arrays)}.")
        values = {}
        xp = backend.array_module(arrays[0]) if arrays else numpy
        for spec, array in zip(self.inputs, arrays):
            array = xp.asarray(array, dtype=spec["dtype"])
            expected = spec["shape"]
            if array.ndim != len(expected) or any(e is not None and e != n for e, n in zip(expected, array.shape)):
                raise ValueError(f"Graph.run: input {spec['name']!r} expected shape {tuple(expected)}; got {array.shape}.")
            values[spec["name"]] = array
        for name, array in self.arrays.items():
            values[name] = xp.asarray(array)
        for node in self.nodes:
            primitive = get_primitive(node["op"])
            output, _ = primitive.forward(xp, *[values[ref] for ref in node["inputs"]], **node["attrs"])
            values[node["output"]] = output
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
            "inputs": self.inputs,
            "nodes": [dict(node, attrs=_jsonable(node["attrs"])) for node in self.nodes],
            "outputs": self.outputs,
            "output_refs": self.output_refs,
            "output_kind": self.output_kind,
            "parameters": self.parameters,
            "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in self.arrays.items()},
        }
        json.dumps(spec)  # a non-JSON attr is a bug in the primitive that recorded it: fail here, loudly
        return spec

    @classmethod
    def from_dict(cls, spec, arrays):
        """Rebuild a graph from :meth:`to_dict` output and its arrays; runs no code from the data."""
        version = spec.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"Graph.from_dict: expected format_version {FORMAT_VERSION}; got {version!r}.")
        missing = set(spec["arrays"]) - set(arrays)
        if missing:
            raise ValueError(f"Graph.from_dict: arrays missing for {sorted(missing)}.")
        nodes = [
            {"op": n["op"], "inputs": list(n["inputs"]), "attrs": _from_json(n["attrs"]), "output": n["output"]}
            for n in spec["nodes"]
        ]
        inputs = [dict(i, shape=list(i["shape"])) for i in spec["inputs"]]
        return cls(
            inputs, nodes, list(spec["outputs"]), {k: arrays[k] for k in spec["arrays"]},
            spec.get("parameters", ()), spec.get("output_kind", "tuple"), spec.get("output_refs"),
        )


def trace(fn, *example_inputs, input_names=None):
    """Run ``fn(*inputs)`` once on placeholders and record it as a :class:`Graph`.

    Tensors that ``fn`` reads but did not compute become named arrays of the graph: those that
    require grad are its parameters (named by their ``.name`` when set), the rest constants.

    >>> import flowlearn as fl, numpy as np
    >>> w = fl.tensor(np.ones((3, 2)), requires_grad=True, name="w")
    >>> graph = fl.trace(lambda x: fl.ops.relu(x @ w), np.ones((4, 3)))
    >>> graph.run(np.ones((5, 3))).shape
    (5, 2)
    """
    placeholders = [
        Tensor._from_array(x.data, False) if isinstance(x, Tensor) else tensor(x) for x in example_inputs
    ]
    names = list(input_names) if input_names is not None else [f"input_{i}" for i in range(len(placeholders))]
    refs = {id(p): n for p, n in zip(placeholders, names)}
    tape = []
    with _flag("tape", tape), _flag("grad_enabled", False):
        outputs = fn(*placeholders)
    flat_outputs, kind = _flatten_outputs(outputs)

    arrays, parameters, nodes, used_names = {}, [], [], set(names)
    keep_alive = []  # ids are only unique while the tensors live

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
        keep_alive.append(t)
        return name

    for index, (node, result) in enumerate(tape):
        inputs = [refs[id(t)] if id(t) in refs else external(t) for t in node.inputs]
        output = f"{node.primitive.name}_{index}"
        refs[id(result)] = output
        nodes.append({"op": node.primitive.name, "inputs": inputs, "attrs": dict(node.attrs), "output": output})

    output_refs = [refs[id(t)] if id(t) in refs else external(t) for _, t in flat_outputs]
    input_specs = [
        {"name": n, "dtype": str(p.dtype), "shape": [None] + list(p.shape[1:]) if p.ndim else []}
        for n, p in zip(names, placeholders)
    ]
    return Graph(input_specs, nodes, [n for n, _ in flat_outputs], arrays, parameters, kind, output_refs)
