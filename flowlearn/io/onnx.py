"""ONNX export: a traced flowlearn graph lowered op by op to an ONNX model (the ``onnx`` extra).

``export_onnx(obj, path)`` takes the ``serving_default`` graph of a Sequential model or a scikit-learn
estimator, lowers each node through one function per primitive (``_LOWERINGS``), and writes a model that
onnxruntime runs with the same results as flowlearn. Parameters become initializers; the batch dimension
stays free (``dim_param "batch"``); inputs and outputs keep the signature's names.

flowlearn is NHWC and ONNX's Conv and pooling are NCHW, so those nodes sit between two Transposes
(onnxruntime's optimizer cancels the pairs between consecutive convolutions). Spatial sizes are known from
the traced node shapes, so TensorFlow's "same" padding is written as explicit pads (the odd pixel at the
bottom/right), computed by the same function the convolution uses.

A node the mapping does not cover is reported with every other such node in one error, so a user learns
everything missing at once.
"""
import os

import numpy

from ..core.ops.conv import _same_pads

__all__ = ["export_onnx", "to_onnx", "UnsupportedOpError", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
# Softmax's per-axis semantics, Squeeze/Unsqueeze/ReduceSum taking axes as an input and Clip's bounds as
# inputs all arrive by opset 13.
MIN_OPSET = 13
_BATCH_DIM = "batch"
_INT64_MAX = numpy.iinfo(numpy.int64).max
_INT64_MIN = numpy.iinfo(numpy.int64).min


class UnsupportedOpError(ValueError):
    """The graph holds nodes that have no ONNX lowering; ``ops`` lists their primitive names."""

    def __init__(self, message, ops):
        super().__init__(message)
        self.ops = ops


class _Unsupported(Exception):
    """Raised by a lowering for attrs it cannot express (collected, then reported with the rest)."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "export_onnx needs the onnx package: pip install 'flowlearn[onnx]' (or pip install onnx)."
        ) from None
    return onnx


# -- the lowering context -------------------------------------------------------------------------------
class _Builder:
    """Collects ONNX nodes and initializers; knows every flowlearn value's shape and dtype."""

    def __init__(self, onnx, graph, opset, reserved):
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.nodes = []
        self.initializers = {}  # name -> ndarray
        self.used = set(reserved)  # names an internal value must not take (inputs, outputs)
        self.names = {}  # flowlearn ref -> ONNX value name
        self.info = {}  # flowlearn ref -> (shape or None, numpy dtype)
        self.arrays = graph.arrays
        for spec in graph.inputs:
            self.names[spec["name"]] = spec["name"]
            self.info[spec["name"]] = (list(spec["shape"]), numpy.dtype(spec["dtype"]))
        for node in graph.nodes:
            shape = node.get("shape")
            self.info[node["output"]] = (None if shape is None else list(shape), numpy.dtype(node["dtype"] or "f4"))
        for name, array in graph.arrays.items():
            self.info[name] = (list(array.shape), array.dtype)

    def fresh(self, base):
        """An unused ONNX value name derived from ``base``."""
        base = base.replace(":", "_")
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def value(self, ref):
        """The ONNX name of flowlearn value ``ref`` (an array becomes an initializer on first use)."""
        name = self.names.get(ref)
        if name is None:
            name = self.names[ref] = self.fresh(ref)
            if ref in self.arrays:
                self.initializers[name] = numpy.ascontiguousarray(self.arrays[ref])
        return name

    def operand(self, ref, dtype):
        """``ref`` as ``dtype``: numpy promotes mixed operands (float32 * float64), ONNX needs them cast."""
        dtype = numpy.dtype(dtype)
        if self.dtype(ref) == dtype:
            return self.value(ref)
        if self.is_array(ref):
            return self.const(self.arrays[ref].astype(dtype), ref)
        return self.add("Cast", [self.value(ref)], to=_tensor_type(self.onnx, dtype))

    def output_of(self, node):
        return self.value(node["output"])

    def const(self, array, base="const"):
        name = self.fresh(base)
        self.initializers[name] = numpy.ascontiguousarray(array)
        return name

    def ints(self, values, base="ints"):
        return self.const(numpy.asarray(values, dtype=numpy.int64).reshape(-1), base)

    def scalar(self, value, dtype, base="scalar"):
        return self.const(numpy.asarray(value, dtype=dtype), base)

    def add(self, op_type, inputs, output=None, base=None, **attrs):
        """Append one ONNX node; returns its output name (a fresh one unless ``output`` is given)."""
        output = output or self.fresh(base or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attrs))
        return output

    def shape(self, ref):
        return self.info[ref][0]

    def dtype(self, ref):
        return self.info[ref][1]

    def is_array(self, ref):
        return ref in self.arrays


# -- lowerings: one per primitive name -------------------------------------------------------------------
_LOWERINGS = {}


def _lowers(*names):
    def register(function):
        for name in names:
            _LOWERINGS[name] = function
        return function
    return register


def _unary(op_type):
    def lower(b, node):
        b.add(op_type, [b.value(node["inputs"][0])], b.output_of(node))
    return lower


for _name, _op in {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "neg": "Neg", "relu": "Relu",
                   "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}.items():
    _LOWERINGS[_name] = _unary(_op)

# dropout is recorded only in training mode; an exported model predicts, where dropout is the identity.
_LOWERINGS["dropout"] = _unary("Identity")
_LOWERINGS["to_device"] = _unary("Identity")


def _operands(b, refs, dtype=None):
    """The inputs cast to ``dtype`` (default: the type numpy promotes them to)."""
    dtype = numpy.result_type(*[b.dtype(ref) for ref in refs]) if dtype is None else dtype
    return [b.operand(ref, dtype) for ref in refs]


def _binary(op_type):
    def lower(b, node):
        b.add(op_type, _operands(b, node["inputs"], node["dtype"]), b.output_of(node))
    return lower


for _name, _op in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max",
                   "minimum": "Min", "matmul": "MatMul"}.items():
    _LOWERINGS[_name] = _binary(_op)


@_lowers("where")
def _where(b, node):
    condition, *operands = node["inputs"]
    b.add("Where", [b.operand(condition, bool)] + _operands(b, operands, node["dtype"]), b.output_of(node))


@_lowers("floordiv")
def _floordiv(b, node):
    # numpy floors; ONNX Div truncates integers. (a - a mod b) / b is exact, and Mod with fmod=0 takes
    # the divisor's sign as numpy does.
    a, d = _operands(b, node["inputs"], node["dtype"])
    if numpy.dtype(node["dtype"]).kind == "f":
        b.add("Floor", [b.add("Div", [a, d])], b.output_of(node))
        return
    rest = b.add("Mod", [a, d], fmod=0)
    b.add("Div", [b.add("Sub", [a, rest]), d], b.output_of(node))


_COMPARISONS = {"equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
                "greater_equal": "GreaterOrEqual"}


@_lowers("compare")
def _compare(b, node):
    inputs = _operands(b, node["inputs"])
    op = node["attrs"]["op"]
    if op == "not_equal":
        b.add("Not", [b.add("Equal", inputs)], b.output_of(node))
    else:
        b.add(_COMPARISONS[op], inputs, b.output_of(node))


@_lowers("clip")
def _clip(b, node):
    ref = node["inputs"][0]
    dtype = b.dtype(ref)
    low, high = node["attrs"].get("low"), node["attrs"].get("high")
    bounds = ["" if low is None else b.scalar(low, dtype, "clip_low"),
              "" if high is None else b.scalar(high, dtype, "clip_high")]
    while bounds and bounds[-1] == "":
        bounds.pop()
    b.add("Clip", [b.value(ref)] + bounds, b.output_of(node))


@_lowers("leaky_relu")
def _leaky_relu(b, node):
    # flowlearn's max(x, alpha x) (alpha <= 1) and min(x, alpha x) (alpha > 1) are both "x if x >= 0 else
    # alpha x", which is LeakyRelu for any alpha.
    b.add("LeakyRelu", [b.value(node["inputs"][0])], b.output_of(node), alpha=float(node["attrs"]["alpha"]))


@_lowers("elu")
def _elu(b, node):
    attrs = node["attrs"]
    scale = float(attrs.get("scale", 1.0))
    x = b.value(node["inputs"][0])
    if scale == 1.0:
        b.add("Elu", [x], b.output_of(node), alpha=float(attrs.get("alpha", 1.0)))
        return
    y = b.add("Elu", [x], alpha=float(attrs.get("alpha", 1.0)))
    b.add("Mul", [y, b.scalar(scale, b.dtype(node["inputs"][0]))], b.output_of(node))


@_lowers("selu")
def _selu(b, node):
    from ..core.ops.activation import _SELU_ALPHA, _SELU_SCALE

    b.add("Selu", [b.value(node["inputs"][0])], b.output_of(node), alpha=float(_SELU_ALPHA), gamma=float(_SELU_SCALE))


@_lowers("softmax", "log_softmax")
def _softmax(b, node):
    axis = node["attrs"]["axis"]
    if isinstance(axis, (tuple, list)):
        if len(axis) != 1:
            raise _Unsupported(f"softmax over several axes {tuple(axis)}")
        axis = axis[0]
    op_type = "Softmax" if node["op"] == "softmax" else "LogSoftmax"
    b.add(op_type, [b.value(node["inputs"][0])], b.output_of(node), axis=int(axis))


# -- shapes --------------------------------------------------------------------------------------------
def _axes_list(axis, rank):
    if axis is None:
        return None
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return [int(a) % rank if rank else int(a) for a in axes]


@_lowers("reshape")
def _reshape(b, node):
    shape = list(node["attrs"]["shape"])
    if 0 in shape:
        raise _Unsupported("reshape to a shape with a 0-size dimension")
    b.add("Reshape", [b.value(node["inputs"][0]), b.ints(shape, "shape")], b.output_of(node))


@_lowers("expand_dims")
def _expand_dims(b, node):
    axis = node["attrs"]["axis"]
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    b.add("Unsqueeze", [b.value(node["inputs"][0]), b.ints(axes, "axes")], b.output_of(node))


@_lowers("squeeze")
def _squeeze(b, node):
    ref = node["inputs"][0]
    axis = node["attrs"]["axis"]
    shape = b.shape(ref)
    if axis is None:
        if shape is None or None in shape:
            raise _Unsupported("squeeze of every size-1 axis of a value of unknown shape")
        axes = [i for i, n in enumerate(shape) if n == 1]
    else:
        axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    b.add("Squeeze", [b.value(ref), b.ints(axes, "axes")], b.output_of(node))


@_lowers("transpose")
def _transpose(b, node):
    ref = node["inputs"][0]
    axes = node["attrs"]["axes"]
    attrs = {} if axes is None else {"perm": [int(a) for a in axes]}  # None: reversed, ONNX's default too
    b.add("Transpose", [b.value(ref)], b.output_of(node), **attrs)


@_lowers("concat")
def _concat(b, node):
    b.add("Concat", _operands(b, node["inputs"], node["dtype"]), b.output_of(node), axis=int(node["attrs"]["axis"]))


@_lowers("stack")
def _stack(b, node):
    axis = int(node["attrs"]["axis"])
    axes = b.ints([axis], "axes")
    parts = [b.add("Unsqueeze", [value, axes]) for value in _operands(b, node["inputs"], node["dtype"])]
    b.add("Concat", parts, b.output_of(node), axis=axis)


@_lowers("pad")
def _pad(b, node):
    ref = node["inputs"][0]
    widths = node["attrs"]["pad_width"]
    pads = [int(w[0]) for w in widths] + [int(w[1]) for w in widths]
    fill = b.scalar(node["attrs"].get("constant_values", 0), b.dtype(ref), "pad_value")
    b.add("Pad", [b.value(ref), b.ints(pads, "pads"), fill], b.output_of(node), mode="constant")


@_lowers("broadcast_to")
def _broadcast_to(b, node):
    shape = [int(n) for n in node["attrs"]["shape"]]
    x = b.value(node["inputs"][0])
    if len(node["inputs"]) == 1:
        b.add("Expand", [x, b.ints(shape, "shape")], b.output_of(node))
        return
    # A second input (added by fl.trace) gives the leading size: the replay's batch.
    batch = b.add("Slice", [b.add("Shape", [b.value(node["inputs"][1])]), b.ints([0]), b.ints([1])])
    target = b.add("Concat", [batch, b.ints(shape[1:], "shape_tail")], axis=0) if shape[1:] else batch
    b.add("Expand", [x, target], b.output_of(node))



def _tensor_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(numpy.dtype(dtype))


@_lowers("cast", "cast_no_grad")
def _cast(b, node):
    to = _tensor_type(b.onnx, node["attrs"]["dtype"])
    b.add("Cast", [b.value(node["inputs"][0])], b.output_of(node), to=to)


# -- reductions ----------------------------------------------------------------------------------------
_REDUCTIONS = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
               "logsumexp": "ReduceLogSumExp"}


@_lowers(*_REDUCTIONS)
def _reduce(b, node):
    ref = node["inputs"][0]
    rank = len(b.shape(ref))
    axes = _axes_list(node["attrs"]["axis"], rank)
    keepdims = int(bool(node["attrs"]["keepdims"]))
    op_type = _REDUCTIONS[node["op"]]
    inputs = [b.value(ref)]
    attrs = {"keepdims": keepdims}
    if axes is not None:
        # ReduceSum takes its axes as an input from opset 13, the others from opset 18.
        if op_type == "ReduceSum" or b.opset >= 18:
            inputs.append(b.ints(axes, "axes"))
        else:
            attrs["axes"] = axes
    if rank == 0:
        b.add("Identity", inputs[:1], b.output_of(node))
        return
    b.add(op_type, inputs, b.output_of(node), **attrs)


@_lowers("argmax")
def _argmax(b, node):
    ref = node["inputs"][0]
    axis, keepdims = node["attrs"]["axis"], bool(node["attrs"]["keepdims"])
    x = b.value(ref)
    if axis is None:
        if keepdims:
            raise _Unsupported("argmax over all axes with keepdims=True")
        x, axis = b.add("Reshape", [x, b.ints([-1], "flat")]), 0
    b.add("ArgMax", [x], b.output_of(node), axis=int(axis), keepdims=int(keepdims))


@_lowers("one_hot")
def _one_hot(b, node):
    # ONNX OneHot wraps negative indices; flowlearn (as TensorFlow) gives a row of zeros for any index
    # outside [0, depth): compare against arange(depth) instead.
    ref = node["inputs"][0]
    depth = int(node["attrs"]["depth"])
    ids = b.add("Unsqueeze", [b.value(ref), b.ints([-1], "axes")])
    hits = b.add("Equal", [ids, b.const(numpy.arange(depth, dtype=b.dtype(ref)), "arange")])
    b.add("Cast", [hits], b.output_of(node), to=_tensor_type(b.onnx, node["attrs"]["dtype"]))


# -- indexing ------------------------------------------------------------------------------------------
@_lowers("getitem")
def _getitem(b, node):
    """Basic indexing (ints, slices, None, Ellipsis) as Slice + Squeeze + Unsqueeze, one integer index
    array among full slices as Gather (an Embedding's ``kernel[ids]``)."""
    ref = node["inputs"][0]
    rank = len(b.shape(ref))
    index = list(node["attrs"]["index"])
    consumed = sum(1 for item in index if item is not None and item != "...")
    if "..." in index:
        at = index.index("...")
        index[at:at + 1] = [("slice", None, None, None)] * (rank - consumed)
    index += [("slice", None, None, None)] * (rank - sum(1 for item in index if item is not None))
    arrays = [item for item in index if isinstance(item, (tuple, list)) and item[0] == "array"]
    x = b.value(ref)
    if arrays:
        others = [item for item in index if not (isinstance(item, (tuple, list)) and item[0] == "array")]
        if len(arrays) > 1 or any(not isinstance(item, (tuple, list)) or tuple(item[1:]) != (None, None, None)
                                  for item in others):
            raise _Unsupported("indexing with an index array combined with other index items")
        indices_ref = node["inputs"][1 + arrays[0][1]]
        if b.dtype(indices_ref).kind == "b":
            raise _Unsupported("boolean-mask indexing")
        axis = index.index(arrays[0])
        b.add("Gather", [x, b.value(indices_ref)], b.output_of(node), axis=axis)
        return
    starts, ends, axes, steps, dropped, inserted = [], [], [], [], [], []
    axis = out_axis = 0
    for item in index:
        if item is None:
            inserted.append(out_axis)
            out_axis += 1
            continue
        if isinstance(item, int):
            starts.append(item)
            ends.append(item + 1 if item != -1 else _INT64_MAX)
            axes.append(axis)
            steps.append(1)
            dropped.append(axis)
        else:
            _, start, stop, step = item
            step = 1 if step is None else step
            if (start, stop, step) != (None, None, 1):
                starts.append((0 if step > 0 else _INT64_MAX) if start is None else start)
                ends.append((_INT64_MAX if step > 0 else _INT64_MIN) if stop is None else stop)
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        axis += 1
    if axes:
        x = b.add("Slice", [x, b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes"),
                            b.ints(steps, "steps")])
    if dropped:
        x = b.add("Squeeze", [x, b.ints(dropped, "axes")])
    if inserted:
        x = b.add("Unsqueeze", [x, b.ints(inserted, "axes")])
    b.add("Identity", [x], b.output_of(node))


# -- images: NHWC in flowlearn, NCHW in ONNX --------------------------------------------------------------
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _spatial(b, ref):
    shape = b.shape(ref)
    if shape is None or len(shape) != 4 or None in shape[1:3]:
        raise _Unsupported(f"an image input of unknown spatial size (shape {shape})")
    return shape[1], shape[2]


def _explicit_pads(size, kernel, strides, dilation, padding):
    """ONNX pads [top, left, bottom, right] for flowlearn's padding on an input of spatial ``size``."""
    if padding != "same":
        return [0, 0, 0, 0]
    top, bottom = _same_pads(size[0], kernel[0], strides[0], dilation[0])
    left, right = _same_pads(size[1], kernel[1], strides[1], dilation[1])
    return [top, left, bottom, right]


def _kernel(b, ref, perm):
    """A convolution kernel in ONNX's layout: transposed once at export for a parameter, else by a node."""
    if b.is_array(ref):
        return b.const(numpy.transpose(b.arrays[ref], perm), ref + "_onnx")
    return b.add("Transpose", [b.value(ref)], perm=perm)


@_lowers("conv2d")
def _conv2d(b, node):
    attrs = node["attrs"]
    x_ref, k_ref = node["inputs"][:2]
    kernel_shape = b.shape(k_ref)[:2]
    strides, dilation = list(attrs["strides"]), list(attrs.get("dilation", (1, 1)))
    pads = _explicit_pads(_spatial(b, x_ref), kernel_shape, strides, dilation, attrs["padding"])
    inputs = [b.add("Transpose", [b.value(x_ref)], perm=_TO_NCHW), _kernel(b, k_ref, [3, 2, 0, 1])]  # HWIO -> OIHW
    if len(node["inputs"]) == 3:
        inputs.append(b.value(node["inputs"][2]))
    y = b.add("Conv", inputs, kernel_shape=list(kernel_shape), strides=strides, dilations=dilation, pads=pads)
    activation = attrs.get("activation")
    if activation == "relu":
        y = b.add("Relu", [y])
    elif activation is not None:
        raise _Unsupported(f"conv2d with fused activation {activation!r}")
    b.add("Transpose", [y], b.output_of(node), perm=_TO_NHWC)


@_lowers("conv2d_transpose")
def _conv2d_transpose(b, node):
    attrs = node["attrs"]
    x_ref, k_ref = node["inputs"]
    kernel_shape = list(b.shape(k_ref)[:2])
    strides = list(attrs["strides"])
    size = list(attrs["output_size"])
    in_size = _spatial(b, x_ref)
    # conv2d_transpose is conv2d's input gradient for an input of spatial `size`: the same pads, and the
    # rows that conv2d's windows never reach (a stride leaves them) as output_padding, which ONNX fills
    # with zeros as the gradient has them.
    top, left, bottom, right = _explicit_pads(size, kernel_shape, strides, (1, 1), attrs["padding"])
    extra = [size[0] - (strides[0] * (in_size[0] - 1) + kernel_shape[0] - top - bottom),
             size[1] - (strides[1] * (in_size[1] - 1) + kernel_shape[1] - left - right)]
    if not all(0 <= e < s for e, s in zip(extra, strides)):
        raise _Unsupported(f"conv2d_transpose to output size {tuple(size)} from input size {in_size}")
    inputs = [b.add("Transpose", [b.value(x_ref)], perm=_TO_NCHW), _kernel(b, k_ref, [3, 2, 0, 1])]  # HWOI -> IOHW
    y = b.add("ConvTranspose", inputs, kernel_shape=kernel_shape, strides=strides, pads=[top, left, bottom, right],
              output_padding=extra)
    b.add("Transpose", [y], b.output_of(node), perm=_TO_NHWC)


@_lowers("max_pool2d", "avg_pool2d")
def _pool(b, node):
    attrs = node["attrs"]
    x_ref = node["inputs"][0]
    pool, strides = list(attrs["pool_size"]), list(attrs["strides"])
    pads = _explicit_pads(_spatial(b, x_ref), pool, strides, (1, 1), attrs["padding"])
    x = b.add("Transpose", [b.value(x_ref)], perm=_TO_NCHW)
    if node["op"] == "max_pool2d":  # ONNX pads never win a max, as flowlearn's -inf padding
        y = b.add("MaxPool", [x], kernel_shape=pool, strides=strides, pads=pads)
    else:  # the mean over the unpadded elements only, as TensorFlow counts them
        y = b.add("AveragePool", [x], kernel_shape=pool, strides=strides, pads=pads, count_include_pad=0)
    b.add("Transpose", [y], b.output_of(node), perm=_TO_NHWC)


@_lowers("batch_norm_inference")
def _batch_norm(b, node):
    """y = x * multiplier + shift with per-channel vectors, as flowlearn computes it (any channel axis)."""
    attrs = node["attrs"]
    x_ref, mean_ref, var_ref, *params = node["inputs"]
    dtype = b.dtype(x_ref)
    rank = len(b.shape(x_ref))
    axis = int(attrs["axis"]) % rank

    def vector(ref):
        value = b.value(ref)
        return value if b.dtype(ref) == dtype else b.add("Cast", [value], to=_tensor_type(b.onnx, dtype))

    gamma = vector(params[0]) if attrs["scale"] else None
    beta = vector(params[-1]) if attrs["center"] else None
    std = b.add("Sqrt", [b.add("Add", [vector(var_ref), b.scalar(attrs["epsilon"], dtype, "epsilon")])])
    multiplier = b.add("Reciprocal", [std])
    if gamma is not None:
        multiplier = b.add("Mul", [multiplier, gamma])
    shift = b.add("Neg", [b.add("Mul", [vector(mean_ref), multiplier])])
    if beta is not None:
        shift = b.add("Add", [shift, beta])
    if axis != rank - 1:  # (C,) vectors broadcast along the last axis only: shape them (C, 1, ..., 1)
        spread = b.ints([-1] + [1] * (rank - axis - 1), "channel_shape")
        multiplier, shift = b.add("Reshape", [multiplier, spread]), b.add("Reshape", [shift, spread])
    scaled = b.add("Mul", [b.value(x_ref), multiplier])
    b.add("Add", [scaled, shift], b.output_of(node))


# -- the model ------------------------------------------------------------------------------------------
class _Export:
    """What to write: a graph, the visible output names in order, and label lookups on graph outputs."""

    def __init__(self, graph, outputs=None, lookups=None):
        self.graph = graph
        self.outputs = list(graph.outputs) if outputs is None else list(outputs)
        self.lookups = lookups or {}  # output name -> (graph output it indexes, labels ndarray)


def _labels_of(obj, name):
    classes = getattr(obj, "classes_", None)
    if classes is None:
        raise ValueError(f"export_onnx: output {name!r} looks up class labels, but {type(obj).__name__} has no "
                         "`classes_`.")
    classes = numpy.asarray(classes)
    return classes.astype(object) if classes.dtype.kind in "USO" else classes


def _signature_export(obj, signature_name, serving_input_receiver_fn=None):
    """The graph of ``obj``'s signature ``signature_name`` (from the SavedModel builders), or a bare Graph."""
    from ..core.trace import Graph
    from .saved_model import signature_graphs

    if isinstance(obj, Graph):
        return _Export(obj)
    signatures = signature_graphs(obj, serving_input_receiver_fn)
    if signature_name not in signatures:
        raise ValueError(f"export_onnx: unknown `signature_name` {signature_name!r}; {type(obj).__name__} has "
                         f"{sorted(signatures)}.")
    signature = signatures[signature_name]
    if signature.preprocess is not None:
        raise ValueError(
            f"export_onnx: {type(obj).__name__} takes raw feature columns, whose string lookups and hashing run "
            "outside the graph and have no ONNX lowering; export a model that takes the encoded matrix instead."
        )
    lookups = {name: (spec["source"], _labels_of(obj, name)) for name, spec in signature.lookups.items()}
    return _Export(signature.graph, [spec["name"] for spec in signature.outputs], lookups)


def _value_info(onnx, name, dtype, shape, batch):
    dims = None
    if shape is not None:
        dims = [_BATCH_DIM if i == 0 and batch else n for i, n in enumerate(shape)]
    return onnx.helper.make_tensor_value_info(name, _tensor_type(onnx, dtype), dims)


def to_onnx(graph, opset=None, name="flowlearn", *, outputs=None, lookups=None):
    """Lower a traced :class:`flowlearn.Graph` to an ``onnx.ModelProto`` (see :func:`export_onnx`).

    ``outputs`` names the graph outputs to expose, in order (default: all); ``lookups`` maps further output
    names to ``(graph output, labels)``: ``labels[graph output]`` (class labels from class ids, by Gather).
    """
    onnx = _onnx()
    lookups = dict(lookups or {})
    outputs = list(graph.outputs) if outputs is None else list(outputs)
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"export_onnx: expected `opset` to be an int >= {MIN_OPSET} (or None); got {opset!r}.")
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(
            f"export_onnx: opset {opset} is newer than the installed onnx package supports "
            f"({onnx.defs.onnx_opset_version()})."
        )
    missing = sorted({node["op"] for node in graph.nodes if node["op"] not in _LOWERINGS})
    input_names = [spec["name"] for spec in graph.inputs]
    b = _Builder(onnx, graph, opset, input_names + outputs)
    problems = [f"{op} (no ONNX lowering)" for op in missing]
    failed = list(missing)
    for node in graph.nodes:
        lower = _LOWERINGS.get(node["op"])
        if lower is None:
            continue
        try:
            lower(b, node)
        except _Unsupported as why:
            problems.append(f"{node['op']} at node {node['output']!r}: {why}")
            failed.append(node["op"])
    if problems:
        raise UnsupportedOpError(
            "export_onnx: the graph uses operations that cannot be exported to ONNX: " + "; ".join(problems)
            + f". Supported primitives: {sorted(_LOWERINGS)}.",
            sorted(set(failed)),
        )
    refs = dict(zip(graph.outputs, graph.output_refs))
    unknown = [n for n in outputs if n not in refs and n not in lookups]
    if unknown:
        raise ValueError(f"export_onnx: outputs {unknown} are not outputs of the graph ({graph.outputs}).")
    inputs = [_value_info(onnx, spec["name"], spec["dtype"], spec["shape"], spec.get("batch")) for spec in graph.inputs]
    by_ref = {node["output"]: node for node in graph.nodes}
    batch_inputs = {spec["name"] for spec in graph.inputs if spec.get("batch")}
    output_infos = []
    for out_name in outputs:
        ref = refs[lookups[out_name][0]] if out_name in lookups else refs[out_name]
        shape, dtype = b.info[ref]
        batch = bool(by_ref.get(ref, {}).get("batch")) or ref in batch_inputs
        if out_name in lookups:
            labels = lookups[out_name][1]
            b.add("Gather", [b.const(labels, "labels"), b.value(ref)], out_name, axis=0)
            dtype = labels.dtype
        else:
            b.add("Identity", [b.value(ref)], out_name)
        output_infos.append(_value_info(onnx, out_name, dtype, shape, batch))
    initializers = [onnx.numpy_helper.from_array(array, name) for name, array in b.initializers.items()]
    onnx_graph = onnx.helper.make_graph(b.nodes, name, inputs, output_infos, initializers)
    opset_ids = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(
        onnx_graph, opset_imports=opset_ids, producer_name="flowlearn",
        # The oldest IR version that carries this opset: the file loads in the oldest runtimes that can run it.
        ir_version=onnx.helper.find_min_ir_version_for(opset_ids),
    )
    return model


def export_onnx(model_or_estimator, path, opset=None, *, signature_name="serving_default",
                serving_input_receiver_fn=None):
    """Write an ONNX model that computes what ``model_or_estimator`` predicts; returns ``path``.

    Parameters
    ----------
    model_or_estimator : Sequential, fitted flowlearn estimator, Pipeline, model_fn Estimator, or flowlearn.Graph
        Exported through a serving signature's graph, the one a SavedModel stores
        (:func:`flowlearn.io.saved_model.signature_graphs`): the inputs and outputs keep the signature's
        names, the batch dimension is free (``dim_param "batch"``). A scikit-learn Pipeline of scalers
        ending in a flowlearn estimator exports with the scalers folded in.
    path : str or os.PathLike
        The ``.onnx`` file to write (parameters are stored inside it as initializers).
    opset : int, optional
        ONNX opset of the default domain, at least 13; defaults to 17. The model's IR version is the
        oldest that carries that opset.

    Raises
    ------
    UnsupportedOpError
        A ``ValueError`` naming every primitive of the graph that has no ONNX lowering (all at once).
    ImportError
        When the onnx package is missing (``pip install 'flowlearn[onnx]'``).

    Examples
    --------
    >>> import numpy as np, flowlearn as fl
    >>> model = fl.layers.Sequential([fl.layers.Dense(3, activation="relu"), fl.layers.Dense(2)])
    >>> model.build((None, 4))
    >>> fl.io.export_onnx(model, "/tmp/model.onnx")  # doctest: +SKIP
    '/tmp/model.onnx'
    """
    onnx = _onnx()
    export = _signature_export(model_or_estimator, signature_name, serving_input_receiver_fn)
    proto = to_onnx(export.graph, opset, name=type(model_or_estimator).__name__, outputs=export.outputs,
                    lookups=export.lookups)
    onnx.checker.check_model(proto)
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return path
