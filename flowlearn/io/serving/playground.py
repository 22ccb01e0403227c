"""The model playground (``GET /`` and ``GET /ui/NAME``): what the page shows, worked out from the signatures.

This module knows no HTTP. :func:`describe` turns a loaded model's ``serving_default`` signature into the plain
JSON the page's script reads (``GET /ui/NAME/view.json``): how to ask for the input (a canvas for an image, one
field per feature for tabular inputs), how to show the answer (a bar per class, a value, a reconstruction and its
anomaly score) and, when the export has a ``feature_maps`` signature (``debug_outputs=True``), where the first
convolution's activations come from. :func:`index_page` and :func:`playground_page` fill the HTML templates
shipped in ``ui/``, escaping every value they put in; :func:`static_file` reads the stylesheet and the script.
"""
import functools
import html
import importlib.resources
import math
import string
from urllib.parse import quote

import numpy

from . import codec

__all__ = ["describe", "index_page", "playground_page", "error_page", "static_file", "STATIC_FILES",
           "CONTENT_SECURITY_POLICY", "MAX_FIELDS"]

#: The page's files and their media types; nothing else is served from ``ui/``.
STATIC_FILES = {"playground.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

#: Scripts and styles from this server only (no inline code, no eval); the page reaches no other origin.
#: ``img-src blob:`` lets the file picker show a chosen image (an object URL of a local file).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")

#: Most form fields a tabular page shows (a 784-wide flat input is not a form anyone fills in).
MAX_FIELDS = 256

# Greyscale images are drawn; every image model also gets a file picker.
_CHANNELS = {None: 1, 1: 1, 3: 3, 4: 4}


def _labels(model, signature_name, output):
    """The class labels a lookup output maps ids to (from the export's ``labels.json`` asset), as strings.

    ``LoadedModel`` keeps its label tables private (``_labels``); another loader's model may have none."""
    table = getattr(model, "_labels", {}).get((signature_name, output))
    return None if table is None else [str(v) for v in numpy.asarray(table).tolist()]


# -- inputs ----------------------------------------------------------------------------------------------------
def _image_input(spec, height=None, width=None):
    shape = spec["shape"]
    channels = shape[3] if len(shape) == 4 else None
    integer = numpy.dtype(spec["dtype"]).kind in "iu"
    flat = height is not None
    return {"kind": "image", "name": spec["name"], "height": shape[1] if not flat else height,
            "width": shape[2] if not flat else width, "channels": _CHANNELS[channels],
            "channel_axis": channels is not None, "flat": flat,
            # float inputs were trained on pixels / 255 (load_mnist()[0] / 255.0); integer ones on 0-255
            "scale": 255 if integer else 1, "dtype": spec["dtype"]}


def _column_facts(columns):
    """Per raw feature key: a vocabulary (a select) and a typical value, from the feature columns' JSON configs.

    The typical value is the column's ``default_value``, else the mean of a ``standardize`` normalizer, else the
    middle of a ``minmax`` range or of a bucketized column's boundaries; a vocabulary's first entry.
    """
    facts = {}

    def visit(config):
        if not isinstance(config, dict):
            return
        kind, inner = config.get("class_name"), config.get("config") or {}
        if kind == "NumericColumn":
            fact = facts.setdefault(inner.get("key"), {})
            normalizer = inner.get("normalizer_fn") or [None]
            typical = inner.get("default_value")
            if typical is None and normalizer[0] == "standardize":
                typical = normalizer[1]
            elif typical is None and normalizer[0] == "minmax":
                typical = (numpy.asarray(normalizer[1]) + numpy.asarray(normalizer[2])) / 2
            if typical is not None:
                fact.setdefault("typical", numpy.asarray(typical, dtype=numpy.float64).reshape(-1).tolist())
        elif kind == "BucketizedColumn":
            boundaries = inner.get("boundaries") or []
            source = inner.get("source_column") or {}
            key = (source.get("config") or {}).get("key")
            visit(source)
            if boundaries and "typical" not in facts.get(key, {}):
                middle = boundaries[len(boundaries) // 2 - 1: len(boundaries) // 2 + 1] if len(boundaries) % 2 == 0 \
                    else [boundaries[len(boundaries) // 2]]
                facts.setdefault(key, {})["typical"] = [float(numpy.mean(middle))]
        elif kind in ("VocabularyColumn", "VocabularyFileColumn"):
            field = "vocabulary_list" if kind == "VocabularyColumn" else "vocabulary"
            vocabulary = inner.get(field)
            if isinstance(vocabulary, list) and vocabulary:
                facts.setdefault(inner.get("key"), {})["vocabulary"] = vocabulary
        else:
            for value in inner.values():
                for item in value if isinstance(value, list) else [value]:
                    visit(item)

    for column in columns or []:
        visit(column)
    return facts


def _tabular_input(signature):
    """One field per feature: ``{"input", "index", "label", "type", "options", "value"}`` (index None: a scalar)."""
    preprocess = signature.preprocess or {}
    facts = _column_facts(preprocess.get("columns")) if preprocess.get("kind") == "feature_columns" else {}
    fields = []
    for spec in signature.inputs:
        shape = spec["shape"]
        if len(shape) > 2 or any(d is None for d in shape[1:]):
            return None, (f"input {spec['name']!r} has shape {codec._show(shape)}; the playground draws images "
                          "(None, H, W[, C]) and makes a form for inputs of shape (None,) or (None, k)")
        width = shape[1] if len(shape) == 2 else None
        fact = facts.get(spec["name"], {})
        text = codec._is_string(spec)
        vocabulary = fact.get("vocabulary")
        typical = fact.get("typical") or []
        for i in range(1 if width is None else width):
            field = {"input": spec["name"], "index": None if width is None else i,
                     "label": spec["name"] if width is None else f"{spec['name']}[{i}]"}
            if vocabulary:
                field.update(type="select", options=[str(v) for v in vocabulary], value=str(vocabulary[0]),
                             numeric=not text)
            elif text:
                field.update(type="text", value="", numeric=False)
            else:
                value = typical[i] if i < len(typical) else typical[0] if len(typical) == 1 else 0
                if numpy.dtype(spec["dtype"]).kind in "iu":
                    value = int(round(value))
                field.update(type="number", value=value, numeric=True,
                             step="1" if numpy.dtype(spec["dtype"]).kind in "iu" else "any")
            fields.append(field)
        if len(fields) > MAX_FIELDS:
            return None, f"the inputs have more than {MAX_FIELDS} features, too many for a form"
    return {"kind": "tabular", "fields": fields}, None


def _square_side(spec):
    """The side of a flattened square greyscale image (784 -> 28) for one numeric (None, n) input too wide for a
    form (an AutoEncoder or a CNNClassifier fitted on flattened MNIST pixels), else None."""
    shape = spec["shape"]
    if len(shape) != 2 or shape[1] is None or shape[1] <= MAX_FIELDS or codec._is_string(spec):
        return None
    side = math.isqrt(shape[1])
    return side if side * side == shape[1] else None


def _input_view(signature):
    inputs = signature.inputs
    if len(inputs) == 1 and codec._is_image(inputs[0]) and inputs[0]["shape"][1] >= 4 and inputs[0]["shape"][2] >= 4:
        return _image_input(inputs[0])
    view, reason = _tabular_input(signature)
    if view is None and len(inputs) == 1 and signature.preprocess is None and (side := _square_side(inputs[0])):
        return _image_input(inputs[0], side, side)
    return view if view is not None else {"kind": "unsupported", "reason": reason}


# -- outputs ---------------------------------------------------------------------------------------------------
def _output_view(model, signature):
    outputs = {spec["name"]: spec for spec in signature.outputs}
    method = codec._method(signature)
    if method == "classify" and "scores" in outputs:
        labels = _labels(model, "serving_default", "classes")
        width = outputs["scores"]["shape"][-1]
        return {"kind": "classes", "scores": "scores", "probabilities": True,
                "labels": labels or [str(i) for i in range(width or 0)]}
    if {"outputs", "codes", "scores"} <= set(outputs):  # the AutoEncoder's signature
        return {"kind": "autoencoder", "reconstruction": "outputs", "scores": "scores"}
    if method == "regress":
        return {"kind": "value", "output": next(iter(outputs))}
    if len(outputs) == 1:
        spec = next(iter(outputs.values()))
        shape = spec["shape"]
        if len(shape) == 2 and shape[1] is not None and shape[1] >= 2 and not codec._is_string(spec):
            # A Sequential classifier's one output: probabilities if they sum to 1, else logits (the page says which).
            return {"kind": "classes", "scores": spec["name"], "probabilities": None,
                    "labels": [str(i) for i in range(shape[1])]}
        if len(shape) == 1 or len(shape) == 2 and shape[1] == 1:
            return {"kind": "value", "output": spec["name"]}
    return {"kind": "raw"}


def _feature_maps_view(model):
    signature = model.signatures.get("feature_maps")
    if signature is None or len(signature.outputs) != 1:
        return None
    spec = signature.outputs[0]
    if len(spec["shape"]) != 4 or any(d is None for d in spec["shape"][1:]):
        return None
    return {"signature": "feature_maps", "output": spec["name"], "shape": spec["shape"][1:]}


def describe(model, name, version, served_versions):
    """The page's view of ``model`` (version ``version`` of ``name``), plain JSON.

    Parameters
    ----------
    model : LoadedModel
        As ``load_saved_model`` returns it (``signatures``; class labels come from its label tables).
    name : str
    version : int
    served_versions : list of int

    Returns
    -------
    dict
        ``model``, ``version``, ``versions``, ``predict_url``, ``signature``, ``input`` (kind ``image``,
        ``tabular`` or ``unsupported``), ``output`` (kind ``classes``, ``value``, ``autoencoder`` or ``raw``),
        ``feature_maps`` (None or where the first convolution's activations come from).
    """
    signature = model.signatures["serving_default"]
    input_view = _input_view(signature)
    return {
        "model": name, "version": version, "versions": list(served_versions),
        "predict_url": f"/v1/models/{quote(name, safe='')}/versions/{version}:predict",
        "signature": {"method_name": signature.method_name,
                      "inputs": [dict(s) for s in signature.inputs],
                      "outputs": [dict(s) for s in signature.outputs]},
        "input": input_view,
        "output": _output_view(model, signature),
        "feature_maps": _feature_maps_view(model) if input_view["kind"] == "image" else None,
    }


# -- pages -----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)  # the package's files do not change while it runs
def _template(file_name):
    return string.Template(importlib.resources.files(__package__).joinpath("ui", file_name).read_text("utf-8"))


@functools.lru_cache(maxsize=None)
def static_file(file_name):
    """``(bytes, media type)`` of one of :data:`STATIC_FILES`; KeyError for any other name."""
    media_type = STATIC_FILES[file_name]
    return importlib.resources.files(__package__).joinpath("ui", file_name).read_bytes(), media_type


def _escape(value):
    return html.escape(str(value), quote=True)


def index_page(name, versions):
    """``GET /``: the served model and its versions, with links to their playgrounds and REST endpoints."""
    quoted = quote(name, safe="")
    rows = []
    for number in sorted(versions, reverse=True):
        base = f"/v1/models/{quoted}/versions/{number}"
        rows.append(f'<li><a href="/ui/{quoted}/versions/{number}">version {number}</a> '
                    f'(<a href="{_escape(base)}/metadata">metadata</a>)</li>')
    listing = "\n".join(rows) if rows else "<li>no version loaded yet</li>"
    return _template("index.html").substitute(
        name=_escape(name), playground=_escape(f"/ui/{quoted}"), status=_escape(f"/v1/models/{quoted}"),
        versions=listing)


def playground_page(name, version=None):
    """``GET /ui/NAME[/versions/V]``: the page; its script reads the view from ``data-view``."""
    path = f"/ui/{quote(name, safe='')}" + ("" if version is None else f"/versions/{version}")
    title = name if version is None else f"{name}, version {version}"
    return _template("playground.html").substitute(title=_escape(title), view=_escape(path + "/view.json"))


def error_page(status, message):
    """A small HTML page for a UI URL that cannot be answered (the message escaped)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flowlearn serve</title>"
            "<link rel=\"stylesheet\" href=\"/static/style.css\"></head>\n"
            f"<body><main><h1>{int(status)}</h1><p class=\"error\">{_escape(message)}</p>"
            "<p><a href=\"/\">served models</a></p></main></body></html>\n")
