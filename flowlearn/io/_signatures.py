"""Serving signatures: what a SavedModel exposes, each a traced :class:`~flowlearn.Graph` plus plain JSON.

A :class:`Signature` is named as TF Serving names it (``serving_default``, ``classification``,
``regression``, ``predict``) and holds

* ``inputs`` / ``outputs``: ``{"name", "dtype", "shape"}`` per tensor, None for the batch dimension;
  ``dtype`` is a numpy dtype name, or ``"string"`` for text;
* ``graph``: the traced computation from the graph's inputs to its outputs;
* ``method_name``: ``tensorflow/serving/predict``, ``.../classify`` or ``.../regress``;
* ``preprocess``: None, or how raw inputs become the graph's input when that is not a graph op
  (feature columns: vocabulary lookups and hashing of strings, done by
  :meth:`flowlearn.feature_column.DenseFeatures.encode` from the columns' JSON configs);
* ``lookups``: outputs that are not graph outputs but a table lookup of one (class labels, which may
  be strings, looked up from the integer class ids the graph computes).

The builders here trace what the loader replays. They import nothing of ``flowlearn.estimators``:
an estimator describes itself with a plain dict (``_saved_model_description``) and the builders
work from that, so ``io`` stays below ``estimators``.
"""
import warnings

import numpy

from ..core import backend, no_grad, ops, training_mode
from ..core.tensor import Tensor
from ..core.trace import Graph, trace

__all__ = ["Signature", "PREDICT_METHOD", "CLASSIFY_METHOD", "REGRESS_METHOD", "trace_signature",
           "sequential_signatures", "network_signatures", "scaler_transform"]

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
METHODS = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)

# The batch the signatures are traced at: >= 2, so that a size-1 axis and the batch are told apart.
_TRACE_BATCH = 2


class Signature:
    """One named entry point of a SavedModel (see the module docstring for the fields)."""

    __slots__ = ("inputs", "outputs", "graph", "method_name", "preprocess", "lookups")

    def __init__(self, inputs, outputs, graph, method_name=PREDICT_METHOD, preprocess=None, lookups=None):
        self.inputs = [dict(spec) for spec in inputs]
        self.outputs = [dict(spec) for spec in outputs]
        self.graph = graph
        self.method_name = method_name
        self.preprocess = preprocess
        self.lookups = dict(lookups or {})

    def __repr__(self):
        def show(specs):
            return ", ".join(f"{s['name']}: {s['dtype']}{_shape_text(s['shape'])}" for s in specs)

        return f"Signature({self.method_name}; inputs {{{show(self.inputs)}}} -> outputs {{{show(self.outputs)}}})"

    def to_signature_def(self):
        """TF Serving's metadata form (``GET /v1/models/NAME/metadata``), plain JSON."""
        def tensors(specs):
            return {s["name"]: {"dtype": _tf_dtype(s["dtype"]), "name": s["name"],
                                "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                                         for d in s["shape"]], "unknown_rank": False}}
                    for s in specs}
        return {"inputs": tensors(self.inputs), "outputs": tensors(self.outputs), "method_name": self.method_name}


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


_TF_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int64": "DT_INT64",
              "int32": "DT_INT32", "int16": "DT_INT16", "int8": "DT_INT8", "uint8": "DT_UINT8", "bool": "DT_BOOL",
              "string": "DT_STRING"}


def _tf_dtype(dtype):
    return _TF_DTYPES.get(dtype, "DT_INVALID")


def _example(spec):
    """A batch of zeros (empty strings) for an input spec, at the tracing batch size."""
    shape = (_TRACE_BATCH,) + tuple(spec["shape"][1:])
    return numpy.zeros(shape, dtype=spec["dtype"])


def _output_specs(graph):
    """``{"name", "dtype", "shape"}`` of each graph output, from the recorded node shapes."""
    recorded = {node["output"]: node for node in graph.nodes}
    inputs = {spec["name"]: spec for spec in graph.inputs}
    specs = []
    for name, ref in zip(graph.outputs, graph.output_refs):
        if ref in recorded:
            node = recorded[ref]
            shape, dtype = list(node["shape"]), node["dtype"]
            if node.get("batch") and shape:
                shape[0] = None
        elif ref in inputs:
            shape, dtype = list(inputs[ref]["shape"]), inputs[ref]["dtype"]
        else:
            array = graph.arrays[ref]
            shape, dtype = list(array.shape), str(array.dtype)
        specs.append({"name": name, "dtype": dtype, "shape": shape})
    return specs


def trace_signature(fn, inputs, method_name=PREDICT_METHOD, *, raw_inputs=None, preprocess=None, lookups=None,
                    device="cpu"):
    """Trace ``fn`` (graph-input Tensors in ``inputs`` order -> dict of output Tensors) into a Signature.

    ``inputs`` are the graph's input specs (batch dimension None). ``raw_inputs`` are what clients send
    when ``preprocess`` turns them into the graph's input; ``lookups`` maps extra output names to
    ``{"source": graph output, "asset": file name, "dtype": ...}`` (outputs computed by the loader).
    The graph is traced in inference mode with gradients off, on zeros at batch size 2 on ``device``
    (the model's: its weights come back to the host as the graph's arrays), and must replay at any
    batch size: a graph fixed to the traced batch is refused.
    """
    # Tensors, not arrays: fl.trace would make a float64 array a float32 placeholder.
    examples = [Tensor._from_array(backend.to_device(_example(spec), device), False) for spec in inputs]
    with no_grad(), training_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zeros may divide by zero in a normalizer: harmless here
        graph = trace(fn, *examples, input_names=[spec["name"] for spec in inputs])
    if graph.fixed_batch:
        raise ValueError(
            f"export: the model only replays at the batch size it was traced at ({graph.fixed_batch}); a served "
            "model must take any batch size. Compute batch-dependent sizes with -1 (reshape(-1, ...))."
        )
    if graph.output_kind != "dict":
        got = {"single": "a single Tensor", "tuple": "a tuple of Tensors"}.get(graph.output_kind, graph.output_kind)
        raise ValueError(f"export: a signature function must return a dict of output Tensors; got {got}.")
    _check_inputs_used(graph, "export")
    outputs = _output_specs(graph)
    for name, lookup in (lookups or {}).items():
        source = next(spec for spec in outputs if spec["name"] == lookup["source"])
        outputs.append({"name": name, "dtype": lookup["dtype"], "shape": list(source["shape"])})
    # Graph outputs named "_..." only feed a lookup: clients see the looked-up values instead.
    visible = [spec for spec in outputs if not spec["name"].startswith("_")]
    return Signature(raw_inputs if raw_inputs is not None else graph.inputs, visible, graph, method_name,
                     preprocess, lookups)


def _const(values, like, dtype=None):
    """A constant Tensor of ``values`` on the device of the Tensor ``like``, keeping ``dtype`` (``fl.tensor``
    would make a float64 constant float32, and a GPU model's graph needs its constants on the GPU)."""
    array = numpy.asarray(values, dtype=dtype)
    return Tensor._from_array(backend.to_device(array, backend.device_of(like.data)), False)


def _check_inputs_used(graph, who):
    """ValueError unless every graph input reaches a node or an output.

    An input that reaches nothing was read outside tensor ops (``.data``, numpy, feature columns'
    ``input_layer``): its value was frozen into the graph as a constant, and the export would answer
    every request with the traced example's result.
    """
    used = {ref for node in graph.nodes for ref in node["inputs"]} | set(graph.output_refs)
    unused = [spec["name"] for spec in graph.inputs if spec["name"] not in used]
    if unused:
        raise ValueError(
            f"{who}: the inputs {unused} do not reach any output of the traced graph: the model read them outside "
            "tensor ops (numpy, `.data`, feature columns' input_layer), so their values were frozen into the graph. "
            "Compute on the Tensors with flowlearn ops (feature columns: export a canned estimator with "
            "feature_columns, whose raw-feature lookups the loader runs)."
        )


def _strip(specs):
    return [{"name": s["name"], "dtype": s["dtype"], "shape": list(s["shape"])} for s in specs]


# -- Sequential -----------------------------------------------------------------------------------------
def _model_input_spec(model, name="inputs"):
    shape = getattr(model, "build_input_shape", None)
    if not getattr(model, "built", False) or shape is None:
        raise ValueError(
            f'export: Sequential "{model.name}" is not built; build it (an Input layer, build(input_shape), or one '
            "call on data) before exporting."
        )
    dtype = str(model.dtype) if getattr(model, "_autocast", True) else "int64"
    return {"name": name, "dtype": dtype, "shape": [None] + list(shape[1:])}


def sequential_signatures(model):
    """``serving_default`` (= ``predict``): input ``inputs``, output ``outputs``, as ``model.predict``."""
    spec = _model_input_spec(model)

    def serve(x):
        return {"outputs": model(x, training=False)}

    signature = trace_signature(serve, [spec], device=model.device)
    signature.inputs = _strip(signature.inputs)
    return {"serving_default": signature, "predict": signature}


# -- feature columns: the traced densification ----------------------------------------------------------
def _dense_block(column, block, table, num_buckets_of):
    """A DenseFeatures column's dense value from its slice of the encoded matrix, in graph ops only.

    ``DenseFeatures.call`` computes the multi-hot and embedding weights from the raw array (a constant
    to a trace); this is the same arithmetic as primitives, so it replays on new inputs.
    """
    kind = type(column).__name__
    if kind == "NumericColumn":
        return block
    ids = ops.cast(block, "int64")
    if kind == "BucketizedColumn":
        width = block.shape[1]
        offsets = numpy.arange(width, dtype=numpy.int64) * (len(column.boundaries) + 1)
        ids = ids + _const(offsets, ids)
        depth = column.num_buckets
    else:
        depth = num_buckets_of(column)
    if kind in ("IndicatorColumn", "BucketizedColumn"):
        # one_hot gives zeros for -1 (no id): the sum over the row's ids counts each id, as _multi_hot does.
        return ops.sum(ops.one_hot(ids, depth, dtype=str(block.dtype)), axis=1)
    # EmbeddingColumn: rows of the table weighted by the combiner; ids < 0 weigh nothing.
    live = ops.greater_equal(ids, _const(0, ids, numpy.int64))
    live_f = ops.cast(live, str(table.dtype))
    safe = ops.maximum(ids, _const(0, ids, numpy.int64))  # a missing id (-1) reads row 0, weighted 0 below
    count = ops.sum(live_f, axis=1, keepdims=True)
    if column.combiner == "sum":
        weights = live_f
    else:
        denominator = ops.maximum(count, _const(1, count, table.dtype))
        if column.combiner == "sqrtn":
            denominator = ops.sqrt(denominator)
        weights = ops.mul(live_f, ops.div(_const(1, count, table.dtype), denominator))
    rows = ops.getitem(table, safe)  # (n, k, dimension)
    return ops.sum(ops.mul(rows, ops.expand_dims(weights, -1)), axis=1)


def _densify(layer, encoded):
    """``layer(encoded)`` for a built DenseFeatures layer, as graph ops."""
    blocks = []
    for column, start, stop in layer._layout():
        block = ops.getitem(encoded, (slice(None), slice(start, stop)))
        table = layer._tables.get(column.name)
        dense = _dense_block(column, block, table, lambda c: c.categorical_column.num_buckets)
        blocks.append(dense if dense.dtype == layer.dtype else ops.cast(dense, str(layer.dtype)))
    return blocks[0] if len(blocks) == 1 else ops.concat(blocks, axis=1)


def _raw_feature_specs(layer):
    """The raw inputs a DenseFeatures layer reads: one per feature key, with its dtype and shape."""
    widths = layer.value_widths or {}
    specs = {}

    def add(key, dtype, shape):
        if key in specs and specs[key]["dtype"] != "string" and dtype == "string":
            return
        specs[key] = {"name": key, "dtype": dtype, "shape": [None] + list(shape)}

    def visit(column):
        kind = type(column).__name__
        if kind == "NumericColumn":
            shape = tuple(column.shape)
            add(column.key, "float64", () if shape == (1,) else shape)
        elif kind == "BucketizedColumn":
            visit(column.source_column)
        elif kind in ("IndicatorColumn", "EmbeddingColumn"):
            visit(column.categorical_column)
        elif kind in ("VocabularyColumn", "VocabularyFileColumn"):
            width = widths.get(column.key, 1)
            add(column.key, "string" if column.kind == "string" else "int64", () if width == 1 else (width,))
        elif kind == "HashedColumn":
            width = widths.get(column.key, 1)
            add(column.key, "string", () if width == 1 else (width,))
        elif kind == "CrossedColumn":
            for key in column.crossed_keys:
                if isinstance(key, str):
                    width = widths.get(key, 1)
                    add(key, "string", () if width == 1 else (width,))
                else:
                    visit(key)
        else:
            raise ValueError(f"export: feature column {column!r} ({kind}) has no export mapping.")

    for column in layer.feature_columns:
        visit(column)
    return [specs[key] for key in sorted(specs)]


def _feature_preprocess(layer):
    """(raw input specs, graph input spec, preprocess JSON) of a network whose first layer is DenseFeatures."""
    from .feature_column import serialize

    raw = _raw_feature_specs(layer)
    graph_input = {"name": "features", "dtype": str(layer.dtype), "shape": [None, layer.encoded_width]}
    preprocess = {"kind": "feature_columns", "output": "features",
                  "columns": [serialize(c) for c in layer.feature_columns],
                  "value_widths": dict(layer.value_widths or {})}
    return raw, graph_input, preprocess


# -- scikit-learn estimators ------------------------------------------------------------------------------
def _is_dense_features(layer):
    return type(layer).__name__ == "DenseFeatures" and hasattr(layer, "encode")


def network_signatures(description, transform=None):
    """The signatures of a fitted flowlearn scikit-learn estimator, from its plain-dict description.

    ``description`` (what ``_saved_model_description()`` returns): ``kind`` ("classifier", "regressor",
    "autoencoder"), ``model`` (its Sequential), ``input_shape`` (per-row shape of X), and ``classes``,
    ``y_mean``/``y_scale``/``single_target`` or ``n_encoder_layers`` by kind. ``transform`` (Tensor ->
    Tensor, float64) runs first: a Pipeline's scalers folded into the graph.

    Inputs are float64 (X as the estimator takes it, cast to the network's float32 inside the graph, as
    ``predict`` does), so the exported outputs equal the in-memory ones to float rounding.
    """
    kind, model = description["kind"], description["model"]
    layers = list(model.layers)
    preprocess, raw_inputs = None, None
    if layers and _is_dense_features(layers[0]):
        if transform is not None:
            raise ValueError("export: a Pipeline step before an estimator with feature_columns cannot be folded in.")
        raw_inputs, graph_input, preprocess = _feature_preprocess(layers[0])
        first = layers.pop(0)

        def network_input(x):
            return _densify(first, x)
    else:
        graph_input = {"name": "inputs", "dtype": "float64", "shape": [None] + list(description["input_shape"])}

        def network_input(x):
            if transform is not None:
                x = transform(x)
            return ops.cast(x, str(model.dtype))

    def run(x, stop=None):
        for layer in layers[:stop]:
            x = layer(x, training=False)
        return x

    def trace_one(fn, method, lookups=None):
        signature = trace_signature(fn, [graph_input], method, raw_inputs=raw_inputs, preprocess=preprocess,
                                    lookups=lookups, device=model.device)
        signature.inputs = _strip(signature.inputs)
        return signature

    if kind == "classifier":
        return _classifier_signatures(description, network_input, run, trace_one)
    if kind == "regressor":
        mean = numpy.asarray(description["y_mean"], dtype=numpy.float64)
        scale = numpy.asarray(description["y_scale"], dtype=numpy.float64)
        single = description["single_target"]

        def values(x):
            out = ops.add(ops.mul(ops.cast(run(network_input(x)), "float64"), _const(scale, x)), _const(mean, x))
            return ops.reshape(out, (-1,)) if single else out

        regression = trace_one(lambda x: {"outputs": values(x)}, REGRESS_METHOD)
        predict = trace_one(lambda x: {"predictions": values(x)}, PREDICT_METHOD)
        return {"serving_default": regression, "regression": regression, "predict": predict}
    if kind == "autoencoder":
        n_encoder = description["n_encoder_layers"]

        def outputs(x):
            codes = run(network_input(x), n_encoder)
            reconstruction = ops.cast(run_from(codes, n_encoder), "float64")
            original = x if transform is None else transform(x)
            error = ops.sub(reconstruction, original)
            scores = ops.neg(ops.mean(ops.mul(error, error), axis=1))
            return {"outputs": reconstruction, "codes": ops.cast(codes, "float64"), "scores": scores}

        def run_from(x, start):
            for layer in layers[start:]:
                x = layer(x, training=False)
            return x

        predict = trace_one(outputs, PREDICT_METHOD)
        return {"serving_default": predict, "predict": predict}
    raise ValueError(f"export: unknown estimator kind {kind!r} in its description.")


def _label_dtype(classes):
    classes = numpy.asarray(classes)
    if classes.dtype.kind in "USO":
        return "string"
    return str(classes.dtype)


def _classifier_signatures(description, network_input, run, trace_one):
    classes = numpy.asarray(description["classes"])
    n_classes = len(classes)
    label_dtype = _label_dtype(classes)

    def heads(x):
        logits = run(network_input(x))
        scores = ops.cast(logits, "float64")
        if n_classes == 2:
            # expit(-s), expit(s) as predict_proba computes them; class 1 where the logit is > 0.
            probabilities = ops.concat([ops.sigmoid(ops.neg(scores)), ops.sigmoid(scores)], axis=1)
            class_ids = ops.cast(ops.reshape(ops.greater(scores, _const(0.0, scores, numpy.float64)), (-1,)), "int64")
        else:
            probabilities = ops.softmax(scores, axis=1)
            class_ids = ops.cast(ops.argmax(scores, axis=1), "int64")
        return logits, probabilities, class_ids

    def predict(x):
        logits, probabilities, class_ids = heads(x)
        return {"probabilities": probabilities, "class_ids": class_ids, "logits": logits}

    def classify(x):
        _, probabilities, _ = heads(x)
        # Every class's id on every row (TF's ClassificationOutput lists all classes with their scores).
        zeros = ops.cast(ops.mul(ops.getitem(probabilities, (slice(None), slice(0, 1))),
                                 _const(0.0, probabilities, numpy.float64)), "int64")
        all_ids = ops.add(zeros, _const(numpy.arange(n_classes), zeros, numpy.int64))
        return {"_class_ids": all_ids, "scores": probabilities}

    values = [str(v) for v in classes.tolist()] if label_dtype == "string" else classes.tolist()
    labels = {"asset": "labels.json", "dtype": label_dtype, "values": values}
    predict_sig = trace_one(predict, PREDICT_METHOD, {"classes": dict(labels, source="class_ids")})
    classify_sig = trace_one(classify, CLASSIFY_METHOD, {"classes": dict(labels, source="_class_ids")})
    return {"serving_default": classify_sig, "classification": classify_sig, "predict": predict_sig}


# -- scikit-learn scalers, folded into the graph ---------------------------------------------------------
def scaler_transform(step):
    """Tensor -> Tensor (float64) computing a fitted scikit-learn scaler's ``transform``, or None when
    ``step`` is not one of the supported scalers (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)."""
    name = type(step).__name__
    module = type(step).__module__
    if not module.startswith("sklearn.preprocessing"):
        return None

    def const(values, x):
        return _const(values, x, numpy.float64)

    if name == "StandardScaler":
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def standard(x):
            if mean is not None:
                x = ops.sub(x, const(mean, x))
            if scale is not None:
                x = ops.div(x, const(scale, x))
            return x
        return standard
    if name == "MinMaxScaler":
        low, high = step.feature_range

        def minmax(x):
            x = ops.add(ops.mul(x, const(step.scale_, x)), const(step.min_, x))
            if step.clip:
                x = ops.clip(x, low, high)
            return x
        return minmax
    if name == "MaxAbsScaler":
        return lambda x: ops.div(x, const(step.scale_, x))
    if name == "RobustScaler":
        center, scale = step.center_, step.scale_

        def robust(x):
            if center is not None and step.with_centering:
                x = ops.sub(x, const(center, x))
            if scale is not None and step.with_scaling:
                x = ops.div(x, const(scale, x))
            return x
        return robust
    return None


def debug_signature(signature):
    """A ``predict`` signature whose outputs are every node of ``signature``'s graph (for inspection)."""
    graph = signature.graph
    refs = [node["output"] for node in graph.nodes]
    debug = Graph(graph.inputs, graph.nodes, refs, graph.arrays, graph.parameters, "dict", refs)
    return Signature(signature.inputs, _output_specs(debug), debug, PREDICT_METHOD, signature.preprocess)


# Element-wise ops that may follow a convolution as its activation (when not fused into conv2d).
_ACTIVATION_OPS = ("relu", "elu", "selu", "leaky_relu", "sigmoid", "tanh", "softplus")


def _first_convolution(graph):
    """The ref of the first convolution's activations in ``graph`` (None without a conv2d), and the nodes it needs.

    From the first ``conv2d`` node, a bias ``add`` of an array and an activation that only it feeds are followed,
    so the maps are what the layer outputs (a Conv2D layer fuses both into conv2d; a model_fn may not).
    """
    nodes = list(graph.nodes)
    start = next((i for i, node in enumerate(nodes) if node["op"] == "conv2d"), None)
    if start is None:
        return None, []
    ref = nodes[start]["output"]
    consumers = {}
    for node in nodes:
        for name in node["inputs"]:
            consumers.setdefault(name, []).append(node)
    while len(consumers.get(ref, [])) == 1 and ref not in graph.output_refs:
        (follower,) = consumers[ref]
        bias = follower["op"] == "add" and len(follower["inputs"]) == 2 and \
            any(name in graph.arrays for name in follower["inputs"])
        if not (bias or follower["op"] in _ACTIVATION_OPS and len(follower["inputs"]) == 1):
            break
        ref = follower["output"]
    # Only the nodes the maps depend on (nodes are in execution order).
    needed, kept = {ref}, []
    for node in reversed(nodes):
        if node["output"] in needed:
            kept.append(node)
            needed.update(node["inputs"])
    return ref, kept[::-1]


def feature_map_signature(signature, output="conv1"):
    """A ``predict`` signature with one output, ``output``: the first convolution's activations of ``signature``'s
    graph, (None, H', W', filters), on the same inputs (and preprocessing). None when its graph has no conv2d."""
    graph = signature.graph
    ref, nodes = _first_convolution(graph)
    if ref is None:
        return None
    used = {name for node in nodes for name in node["inputs"]}
    arrays = {name: array for name, array in graph.arrays.items() if name in used}
    parameters = [name for name in graph.parameters if name in used]
    maps = Graph(graph.inputs, nodes, [output], arrays, parameters, "dict", [ref])
    return Signature(signature.inputs, _output_specs(maps), maps, PREDICT_METHOD, signature.preprocess)


# -- the model_fn Estimator: serving input receivers ---------------------------------------------------
class ServingInputReceiver:
    """What a ``serving_input_receiver_fn`` returns: the features the model_fn gets, and the tensors
    clients feed (``tf.estimator.export.ServingInputReceiver``).

    Parameters
    ----------
    features : Tensor or dict of str to Tensor
        Handed to the model_fn as ``features``. Each must be one of ``receiver_tensors`` (a raw
        receiver): the export traces the model_fn on them, and computation on the receiver tensors
        outside the model_fn is not recorded.
    receiver_tensors : Tensor or dict of str to Tensor
        The signature's inputs, by name (a single Tensor is named ``"input"``): their dtype and
        per-example shape define what clients send; their values (any batch of at least 2 rows) are only
        used to trace.
    """

    def __init__(self, features, receiver_tensors):
        if isinstance(receiver_tensors, (Tensor, numpy.ndarray)):
            receiver_tensors = {"input": receiver_tensors}
        if not isinstance(receiver_tensors, dict) or not receiver_tensors:
            raise TypeError(f"ServingInputReceiver: expected `receiver_tensors` to be a Tensor or a non-empty dict of "
                            f"Tensors; got {type(receiver_tensors).__name__}.")
        self.receiver_tensors = {str(k): v if isinstance(v, Tensor) else Tensor._from_array(numpy.asarray(v), False)
                                 for k, v in receiver_tensors.items()}
        for name, value in self.receiver_tensors.items():
            if value.ndim == 0 or value.shape[0] < 2:
                raise ValueError(f"ServingInputReceiver: receiver tensor {name!r} must have a batch of at least 2 rows "
                                 f"to trace; got shape {value.shape}.")
        self.features = features


def build_raw_serving_input_receiver_fn(features_spec):
    """A ``serving_input_receiver_fn`` whose features are the raw inputs described by ``features_spec``.

    Parameters
    ----------
    features_spec : dict of str to (dtype, shape)
        Per feature, its dtype (``"float32"``, ``"int64"``, ...) and per-example shape, e.g.
        ``{"x": ("float32", (4,))}``; a leading None (the batch) may be written too: ``(None, 4)``.

    >>> fn = build_raw_serving_input_receiver_fn({"x": ("float32", (4,))})
    >>> fn().receiver_tensors["x"].shape
    (2, 4)
    """
    if not isinstance(features_spec, dict) or not features_spec:
        raise TypeError(f"build_raw_serving_input_receiver_fn: expected `features_spec` to be a non-empty dict "
                        f"name -> (dtype, shape); got {features_spec!r}.")
    parsed = {}
    for name, entry in features_spec.items():
        try:
            dtype, shape = entry
            dtype = numpy.dtype(dtype)
            shape = tuple(shape)
        except (TypeError, ValueError):
            raise ValueError(f"build_raw_serving_input_receiver_fn: expected (dtype, shape) for feature {name!r}; "
                             f"got {entry!r}.") from None
        if shape and shape[0] is None:
            shape = shape[1:]
        if dtype.kind not in "biuf" or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"build_raw_serving_input_receiver_fn: feature {name!r} needs a numeric dtype and a shape "
                             f"of non-negative ints (None only first); got {entry!r}.")
        parsed[str(name)] = (dtype, shape)

    def serving_input_receiver_fn():
        tensors = {name: Tensor._from_array(numpy.zeros((_TRACE_BATCH,) + shape, dtype=dtype), False)
                   for name, (dtype, shape) in parsed.items()}
        return ServingInputReceiver(dict(tensors), tensors)

    return serving_input_receiver_fn


def receiver_signatures(receiver, predict_fn):
    """``serving_default`` (= ``predict``) of a model_fn: ``predict_fn(features)`` traced on the receiver.

    ``predict_fn`` returns the PREDICT-mode predictions (a Tensor, output ``output``, or a dict).
    """
    if not isinstance(receiver, ServingInputReceiver):
        raise TypeError(f"export_saved_model: serving_input_receiver_fn must return a ServingInputReceiver; got "
                        f"{type(receiver).__name__}.")
    names = list(receiver.receiver_tensors)
    by_id = {id(t): name for name, t in receiver.receiver_tensors.items()}
    features = receiver.features
    single = isinstance(features, Tensor)
    wanted = {"": features} if single else features
    if not isinstance(wanted, dict) or any(id(t) not in by_id for t in wanted.values()):
        raise ValueError(
            "export_saved_model: the ServingInputReceiver's features must be its receiver tensors (a raw receiver, "
            "as build_raw_serving_input_receiver_fn makes); compute anything else inside the model_fn."
        )
    source = {key: by_id[id(t)] for key, t in wanted.items()}
    specs = []
    for name in names:
        value = receiver.receiver_tensors[name]
        specs.append({"name": name, "dtype": str(value.dtype), "shape": [None] + list(value.shape[1:])})

    def serve(*placeholders):
        given = dict(zip(names, placeholders))
        feats = given[source[""]] if single else {key: given[name] for key, name in source.items()}
        predictions = predict_fn(feats)
        if not isinstance(predictions, dict):
            predictions = {"output": predictions}
        return {str(k): v if isinstance(v, Tensor) else Tensor._from_array(numpy.asarray(v), False)
                for k, v in predictions.items()}

    examples = [receiver.receiver_tensors[name] for name in names]
    with no_grad(), training_mode(False):
        graph = trace(serve, *examples, input_names=names)
    if graph.fixed_batch:
        raise ValueError(f"export_saved_model: the model_fn only replays at the traced batch size "
                         f"({graph.fixed_batch}); a served model must take any batch size.")
    _check_inputs_used(graph, "export_saved_model")
    signature = Signature(_strip(graph.inputs), _output_specs(graph), graph, PREDICT_METHOD)
    return {"serving_default": signature, "predict": signature}
