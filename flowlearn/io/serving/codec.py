"""JSON bodies of TF Serving's REST API to input arrays and output arrays back to JSON; knows nothing of HTTP.

Every problem with a request raises :class:`RequestError` with a message fit to show the client (the app turns it
into a 400). The functions take a *signature*: an object with ``inputs`` and ``outputs`` (lists of
``{"name", "dtype", "shape"}``, None for the batch dimension) and ``method_name``, as
``flowlearn.io.load_saved_model`` gives them.

Request formats (TF Serving's names):

- row: ``{"instances": [...]}``, one entry per example: the value of the only input, or a dict of named inputs;
- columnar: ``{"inputs": ...}``, the whole batch of the only input, or a dict of named inputs, each with the batch
  as its leading dimension;
- examples (``:classify`` / ``:regress``): ``{"examples": [{feature: value}], "context": {feature: value}}``.

A value ``{"b64": "..."}`` is binary data: for an image input (``(None, H, W, C)`` with C in 1, 3, 4, or
``(None, H, W)``) a PNG or JPEG of exactly H x W pixels, scaled to [0, 1] for a float input; for a string input
UTF-8 text.
"""
import base64
import binascii
import io
import json

import numpy

__all__ = [
    "RequestError", "PredictRequest", "resolve_signature", "decode_predict", "decode_examples", "encode_predict",
    "encode_classify", "encode_regress", "dumps",
]

_STRING_DTYPES = {"string", "str", "object", "bytes"}
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_CLASSIFY, _REGRESS = "classify", "regress"


class RequestError(ValueError):
    """A request the server cannot answer because of what the client sent (HTTP 400)."""


class PredictRequest:
    """A decoded request: ``inputs`` (name -> array with the batch first), ``rows`` and ``columnar``."""

    __slots__ = ("inputs", "rows", "columnar")

    def __init__(self, inputs, rows, columnar):
        self.inputs, self.rows, self.columnar = inputs, rows, columnar


# -- signatures ----------------------------------------------------------------------------------------------------
def _method(signature):
    """'classify', 'regress' or 'predict' from a signature's method_name (TF's ``tensorflow/serving/classify``)."""
    method = str(getattr(signature, "method_name", "") or "")
    for kind in (_CLASSIFY, _REGRESS):
        if kind in method:
            return kind
    return "predict"


def resolve_signature(signatures, name, method="predict"):
    """The ``(name, signature)`` a request asks for.

    ``name`` None means TF Serving's default: ``serving_default``; for ``:classify`` and ``:regress`` the default
    is ``serving_default`` when it is of that kind, else ``classification`` / ``regression``.
    """
    if name is not None and not isinstance(name, str):
        raise RequestError(f"'signature_name' must be a string; received {type(name).__name__} {name!r}.")
    if name is None:
        name = "serving_default"
        if method != "predict" and (name not in signatures or _method(signatures[name]) != method):
            fallback = {_CLASSIFY: "classification", _REGRESS: "regression"}[method]
            if fallback in signatures:
                name = fallback
    if name not in signatures:
        raise RequestError(f"Serving signature name: {name!r} not found; this model has {sorted(signatures)}.")
    signature = signatures[name]
    if method != "predict" and _method(signature) != method:
        kinds = [n for n, s in signatures.items() if _method(s) == method]
        raise RequestError(
            f":{method} needs a {method} signature; {name!r} is {getattr(signature, 'method_name', None)!r} "
            f"(this model's {method} signatures: {sorted(kinds)})."
        )
    return name, signature


# -- values to arrays ----------------------------------------------------------------------------------------------
def _show(shape):
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _is_string(spec):
    dtype = str(spec["dtype"])
    return dtype in _STRING_DTYPES or numpy.dtype(dtype).kind in "USO"


def _is_image(spec):
    shape = spec["shape"]
    if _is_string(spec) or numpy.dtype(spec["dtype"]).kind not in "fiu":
        return False
    if len(shape) == 4:
        return shape[1] is not None and shape[2] is not None and shape[3] in _IMAGE_MODES
    return len(shape) == 3 and shape[1] is not None and shape[2] is not None


def _b64_bytes(value, where):
    text = value["b64"]
    if not isinstance(text, str):
        raise RequestError(f"{where}: a 'b64' value must be a base64 string; received {type(text).__name__}.")
    try:
        # Standard alphabet, or the URL-safe one; missing padding is forgiven as most decoders do.
        text = text.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"{where}: the 'b64' value is not valid base64 ({error}).") from None


def _decode_image(value, spec, where):
    """One PNG/JPEG instance as an (H, W[, C]) array of the input's dtype; floats scaled to [0, 1]."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise RequestError(
            f"{where}: decoding a {{'b64': ...}} image needs Pillow, which this server does not have "
            "(pip install 'flowlearn[serve]'); send the pixels as nested lists of numbers instead."
        ) from None
    data = _b64_bytes(value, where)
    shape = spec["shape"]
    height, width = shape[1], shape[2]
    channels = shape[3] if len(shape) == 4 else None
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG"):
            raise RequestError(f"{where}: expected a PNG or JPEG image; received {image.format}.")
        # The size is in the header: checked before any pixel is decoded (no decompression bomb).
        if image.size != (width, height):
            raise RequestError(
                f"{where}: expected an image of {width}x{height} pixels (width x height), as input "
                f"{spec['name']!r} has shape {_show(shape)}; received {image.size[0]}x{image.size[1]}."
            )
        pixels = numpy.asarray(image.convert(_IMAGE_MODES.get(channels, "L")))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise RequestError(f"{where}: the 'b64' value is not a readable PNG or JPEG image ({error}).") from None
    if channels == 1:
        pixels = pixels[..., None]
    dtype = numpy.dtype(spec["dtype"])
    if dtype.kind == "f":
        return pixels.astype(dtype) / dtype.type(255)
    return pixels.astype(dtype)


def _text(value, where):
    data = _b64_bytes(value, where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(f"{where}: the 'b64' value is not UTF-8 text ({error}).") from None


def _strings(value, depth, where, spec):
    if isinstance(value, list):
        if depth == 0:
            raise RequestError(f"{where}: expected shape {_show(spec['shape'])}; received deeper nested lists.")
        return [_strings(v, depth - 1, where, spec) for v in value]
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"b64"}:
        return _text(value, where)
    raise RequestError(f"{where}: expected strings (input {spec['name']!r} is a string input); received "
                       f"{type(value).__name__} {_brief(value)}.")


def _brief(value):
    text = json.dumps(value) if not isinstance(value, (bytes, numpy.ndarray)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_ragged(values):
    """The index and shape of the first entry whose shape differs from entry 0's, for the error message."""
    shapes = []
    for index, value in enumerate(values):
        try:
            shape = numpy.shape(value)
        except ValueError:
            return index, "ragged"
        if shapes and shape != shapes[0]:
            return index, list(shape)
        shapes.append(shape)
    return None, None


def _numbers(value, spec, where):
    """Nested JSON numbers as an array of the input's dtype; no silent narrowing or reinterpretation."""
    dtype = numpy.dtype(spec["dtype"])
    try:
        array = numpy.asarray(value)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.dtype.kind == "O":
        if isinstance(value, list) and value:
            index, shape = _first_ragged(value)
            if index is not None:
                found = "is itself ragged or nested too deeply" if shape == "ragged" else f"has shape {shape}"
                raise RequestError(f"{where}: entries have different shapes (entry {index} {found}); input "
                                   f"{spec['name']!r} expects {_show(spec['shape'])}.")
        raise RequestError(f"{where}: expected {dtype} numbers; received values that are not all numbers "
                           f"(null, an object or an integer too large): {_brief(value)}.")
    kind = array.dtype.kind
    if kind in "US":
        raise RequestError(f"{where}: expected {dtype} numbers; received strings: {_brief(value)}.")
    if kind == "b" and dtype.kind != "b":
        raise RequestError(f"{where}: expected {dtype} numbers; received booleans.")
    if dtype.kind == "b" and kind != "b":
        raise RequestError(f"{where}: expected booleans (true/false); received numbers.")
    if dtype.kind in "iu":
        if kind == "f":
            if not numpy.all(numpy.isfinite(array)) or not numpy.all(array == numpy.floor(array)):
                raise RequestError(f"{where}: expected {dtype} integers; received non-integer numbers.")
        info = numpy.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise RequestError(f"{where}: expected {dtype} integers in [{info.min}, {info.max}]; received a "
                               f"value out of that range.")
    return array.astype(dtype, copy=False)


def _check_shape(array, spec, where, row):
    """``array`` holds the batch first; ``row`` words the error per instance (row format)."""
    expected = spec["shape"]
    received = array.shape
    if len(received) == len(expected) and all(e is None or e == r for e, r in zip(expected, received)):
        return
    if len(received) == len(expected) and expected[0] is not None and expected[0] != received[0]:
        raise RequestError(f"{where}: this signature takes exactly {expected[0]} examples per request (its graph is "
                           f"fixed to that batch size, shape {_show(expected)}); received {received[0]}.")
    if row and len(received) >= 1:
        raise RequestError(f"{where}: each instance must have shape {_show(expected[1:])}; received instances of "
                           f"shape {_show(received[1:])}.")
    raise RequestError(f"{where}: expected shape {_show(expected)} (the batch first); received "
                       f"{_show(received)}.")


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _to_array(value, spec, where, row):
    """The batch of one input (a list with one entry per example) as a checked array."""
    if not isinstance(value, list):
        raise RequestError(f"{where}: expected a list with one entry per example (the batch first); received "
                           f"{type(value).__name__} {_brief(value)}.")
    if not value:
        raise RequestError(f"{where}: the batch is empty; send at least one example.")
    if _is_string(spec):
        strings = _strings(value, len(spec["shape"]), where, spec)
        try:
            array = numpy.asarray(strings, dtype=str)
        except ValueError:
            raise RequestError(f"{where}: entries have different shapes; input {spec['name']!r} expects "
                               f"{_show(spec['shape'])}.") from None
        # Object arrays: requests with strings of different lengths then batch together (one '<U' width each).
        array = array.astype(object)
    elif any(_is_b64(v) for v in value):
        if not _is_image(spec):
            raise RequestError(
                f"{where}: 'b64' values are for string and image inputs; input {spec['name']!r} is {spec['dtype']} "
                f"of shape {_show(spec['shape'])}."
            )
        inner = dict(spec, shape=list(spec["shape"][1:]))
        parts = []
        for index, entry in enumerate(value):
            here = f"{where}, example {index}"
            part = _decode_image(entry, spec, here) if _is_b64(entry) else _numbers(entry, inner, here)
            if part.shape != tuple(inner["shape"]):
                _check_shape(part[None], spec, here, row=True)
            parts.append(part)
        array = numpy.stack(parts)
    else:
        array = _numbers(value, spec, where)
    _check_shape(array, spec, where, row)
    return array


# -- requests ------------------------------------------------------------------------------------------------------
def _input_names(signature):
    return [spec["name"] for spec in signature.inputs]


def _check_keys(body, allowed, what):
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object; received {type(body).__name__}.")
    unknown = set(body) - set(allowed)
    if unknown:
        raise RequestError(f"{what} request: unknown field(s) {sorted(unknown)}; expected {sorted(allowed)}.")


def decode_predict(body, signature):
    """A ``:predict`` body (row or columnar format) as a :class:`PredictRequest`."""
    _check_keys(body, ("signature_name", "instances", "inputs"), "predict")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise RequestError("a predict request needs exactly one of 'instances' (row format) and 'inputs' "
                           f"(columnar format); received {'both' if has_rows else 'neither'}.")
    specs = signature.inputs
    names = _input_names(signature)
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(f"'instances' must be a non-empty list, one entry per example; received "
                               f"{_brief(instances)}.")
        named = [isinstance(v, dict) and not (_is_b64(v) and "b64" not in names) for v in instances]
        if any(named):
            if not all(named):
                raise RequestError("'instances' mixes named (objects) and unnamed entries; use one form for all.")
            columns = {}
            for spec in specs:
                name = spec["name"]
                try:
                    columns[name] = [instance[name] for instance in instances]
                except KeyError:
                    index = next(i for i, inst in enumerate(instances) if name not in inst)
                    raise RequestError(f"instance {index} has no input {name!r}; the signature's inputs are "
                                       f"{names}.") from None
            extra = set().union(*instances) - set(names)
            if extra:
                raise RequestError(f"'instances' name unknown input(s) {sorted(extra)}; the signature's inputs "
                                   f"are {names}.")
        elif len(specs) == 1:
            columns = {names[0]: instances}
        else:
            raise RequestError(f"this signature has {len(specs)} inputs {names}: each instance must be an object "
                               "naming them.")
    else:
        value = body["inputs"]
        if isinstance(value, dict) and not (_is_b64(value) and "b64" not in names):
            missing = [n for n in names if n not in value]
            extra = set(value) - set(names)
            if missing or extra:
                raise RequestError(f"'inputs' must name exactly the signature's inputs {names}; missing "
                                   f"{missing}, unknown {sorted(extra)}.")
            columns = value
        elif len(specs) == 1:
            columns = {names[0]: value}
        else:
            raise RequestError(f"this signature has {len(specs)} inputs {names}: 'inputs' must be an object "
                               "naming them.")
    arrays = {}
    for spec in specs:
        where = f"input {spec['name']!r}"
        arrays[spec["name"]] = _to_array(columns[spec["name"]], spec, where, row=has_rows)
    rows = _same_rows(arrays)
    return PredictRequest(arrays, rows, columnar=has_columns)


def _same_rows(arrays):
    sizes = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise RequestError(f"every input needs the same number of examples (leading dimension); received {sizes}.")
    return next(iter(sizes.values()))


def decode_examples(body, signature, method):
    """A ``:classify`` / ``:regress`` body (``examples`` + optional ``context``) as a :class:`PredictRequest`."""
    _check_keys(body, ("signature_name", "examples", "context"), method)
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise RequestError(f"'examples' must be a non-empty list of objects (feature name -> value); received "
                           f"{_brief(examples)}.")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise RequestError(f"'context' must be an object (feature name -> value); received {_brief(context)}.")
    names = _input_names(signature)
    arrays = {}
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise RequestError(f"example {index} must be an object (feature name -> value); received "
                               f"{_brief(example)}.")
    for spec in signature.inputs:
        name = spec["name"]
        column = []
        for index, example in enumerate(examples):
            value = example.get(name, context.get(name, _MISSING))
            if value is _MISSING:
                raise RequestError(f"example {index} has no feature {name!r} (nor has 'context'); the signature "
                                   f"takes {names}.")
            column.append(value)
        # Scalar features of rank-2 inputs arrive one per example; tf.Example features are lists.
        arrays[name] = _to_array(column, spec, f"feature {name!r}", row=True)
    return PredictRequest(arrays, _same_rows(arrays), columnar=False)


_MISSING = object()


# -- outputs to JSON -----------------------------------------------------------------------------------------------
def _tolist(array):
    array = numpy.asarray(array)
    if array.dtype.kind == "S":
        array = numpy.char.decode(array, "utf-8", errors="replace")
    elif array.dtype.kind == "O":
        return _objects(array.tolist())
    return array.tolist()


def _objects(value):
    if isinstance(value, list):
        return [_objects(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, numpy.generic):
        return value.item()
    return value


def encode_predict(outputs, request):
    """``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar); one output is unwrapped."""
    if request.columnar:
        if len(outputs) == 1:
            return {"outputs": _tolist(next(iter(outputs.values())))}
        return {"outputs": {name: _tolist(value) for name, value in outputs.items()}}
    for name, value in outputs.items():
        if numpy.ndim(value) == 0 or numpy.shape(value)[0] != request.rows:
            raise RequestError(f"output {name!r} has shape {list(numpy.shape(value))}, not one entry per example "
                               f"({request.rows}); ask in columnar format ('inputs') to get it whole.")
    if len(outputs) == 1:
        return {"predictions": _tolist(next(iter(outputs.values())))}
    columns = {name: _tolist(value) for name, value in outputs.items()}
    return {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(request.rows)]}


def encode_classify(outputs, rows):
    """``{"result": [[[label, score], ...] per example]}`` from a classification signature's outputs."""
    scores = outputs.get("scores")
    classes = outputs.get("classes")
    if scores is None and classes is None:
        raise RequestError(f"the classification signature returned neither 'classes' nor 'scores' "
                           f"(outputs {sorted(outputs)}).")
    if scores is not None:
        scores = numpy.asarray(scores).reshape(rows, -1).tolist()
    if classes is not None:
        classes = [[str(c) for c in row] for row in _tolist(numpy.asarray(classes).reshape(rows, -1))]
    elif scores is not None:
        classes = [[str(i) for i in range(len(row))] for row in scores]
    if scores is None:
        return {"result": [[[label] for label in row] for row in classes]}
    return {"result": [[[label, score] for label, score in zip(c, s)] for c, s in zip(classes, scores)]}


def encode_regress(outputs, rows):
    """``{"result": [value per example]}`` from a regression signature's ``outputs``."""
    if "outputs" in outputs:
        value = outputs["outputs"]
    elif len(outputs) == 1:
        value = next(iter(outputs.values()))
    else:
        raise RequestError(f"the regression signature has no 'outputs' output (outputs {sorted(outputs)}).")
    value = numpy.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    return {"result": _tolist(value)}


def dumps(payload):
    """Compact JSON bytes; NaN and Infinity written as such, as TF Serving does."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
