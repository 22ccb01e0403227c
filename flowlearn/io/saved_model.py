"""SavedModel export and loading: a model as traced graphs, numeric arrays and JSON assets, safe to load.

::

    export_dir_base/<timestamp>/
      saved_model.json      format name and version, signatures, one traced graph per signature
      variables/variables.npz   the graphs' arrays (numeric .npy entries in a zip; never pickle)
      assets/               labels.json (class labels), feature_columns.json and vocabulary_<i>.json

:func:`export_saved_model` writes one for a Sequential model, every flowlearn scikit-learn estimator,
a scikit-learn Pipeline of scalers ending in one, and the model_fn Estimator; :func:`load_saved_model`
reads it back. Loading runs no code from the files: the graphs replay through the primitive registry
(an unknown op is refused), arrays are read by the checked zip-of-npy reader (numeric dtypes only,
sizes checked against the file before memory is set aside), assets are JSON looked up by name, and
every declaration (format, version, names, dtypes, shapes, references between nodes) is checked
first; anything else is a ValueError naming the file and the problem. The loader imports only
``flowlearn.core`` and ``flowlearn.io``: no estimator class, no model_fn, no user module.
"""
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import zipfile

import numpy

from ..core._archive import check_numeric, read_array, write_archive
from ..core._atomic import atomic_write, sync_folder
from ..core.primitive import REGISTRY
from ..core.trace import Graph
from . import _signatures
from ._signatures import (CLASSIFY_METHOD, METHODS, PREDICT_METHOD, REGRESS_METHOD, ServingInputReceiver, Signature,
                          build_raw_serving_input_receiver_fn)

__all__ = ["export_saved_model", "write_saved_model", "load_saved_model", "signature_graphs", "LoadedModel",
           "Signature", "ServingInputReceiver", "build_raw_serving_input_receiver_fn", "FORMAT_NAME",
           "FORMAT_VERSION", "PREDICT_METHOD", "CLASSIFY_METHOD", "REGRESS_METHOD"]

FORMAT_NAME = "flowlearn.saved_model"
FORMAT_VERSION = 1
_READABLE_VERSIONS = (1,)

MODEL_FILE = "saved_model.json"
VARIABLES_DIR = "variables"
VARIABLES_FILE = "variables.npz"
ASSETS_DIR = "assets"

# Limits a file must respect before it is read at all (generous for real models, refusing absurd ones).
MAX_JSON_BYTES = 64 * 2 ** 20
MAX_ASSET_BYTES = 64 * 2 ** 20
MAX_NODES = 1_000_000
MAX_ELEMENTS = 2 ** 34  # static elements per value (batch excluded)
MAX_RANK = 32

# dtypes a graph may declare for its inputs, node outputs and arrays.
_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
           "float64")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*\Z")  # no "..", no leading "/"
_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,512}\Z")
_ASSET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*\Z")  # a plain file name, no folders


# -- what can be exported ---------------------------------------------------------------------------------
def _pipeline_signatures(pipeline):
    steps = [(name, step) for name, step in pipeline.steps if step is not None and step != "passthrough"]
    if not steps:
        raise ValueError("export_saved_model: the Pipeline has no steps to export.")
    transforms = []
    for name, step in steps[:-1]:
        transform = _signatures.scaler_transform(step)
        if transform is None:
            raise ValueError(
                f"export_saved_model: Pipeline step {name!r} ({type(step).__name__}) cannot be folded into the "
                "exported graph; supported steps before the estimator are StandardScaler, MinMaxScaler, "
                "MaxAbsScaler and RobustScaler."
            )
        transforms.append(transform)
    final_name, final = steps[-1]
    if not hasattr(final, "_saved_model_signatures") or not hasattr(final, "_saved_model_description"):
        raise ValueError(
            f"export_saved_model: the Pipeline's last step {final_name!r} ({type(final).__name__}) must be a flowlearn "
            "scikit-learn estimator."
        )

    def transform(x):
        for step in transforms:
            x = step(x)
        return x

    return final._saved_model_signatures(transform=transform if transforms else None)


def signature_graphs(obj, serving_input_receiver_fn=None):
    """The serving signatures of ``obj``: ``{name: Signature}`` (``.graph`` is a :class:`flowlearn.Graph`).

    ``obj`` is a built Sequential model, a fitted flowlearn scikit-learn estimator, a scikit-learn
    Pipeline of scalers ending in one, or a model_fn Estimator (which needs ``serving_input_receiver_fn``).
    Several names may share one Signature (``serving_default`` is ``classification`` for a classifier).
    """
    from ..layers.sequential import Sequential

    if isinstance(obj, Sequential):
        if serving_input_receiver_fn is not None:
            raise ValueError("export_saved_model: serving_input_receiver_fn is for the model_fn Estimator; a "
                             "Sequential model's input comes from its own input shape.")
        return _signatures.sequential_signatures(obj)
    if type(obj).__name__ == "Pipeline" and hasattr(obj, "steps"):
        return _pipeline_signatures(obj)
    if hasattr(obj, "_saved_model_signatures"):
        if serving_input_receiver_fn is not None:
            return obj._saved_model_signatures(serving_input_receiver_fn=serving_input_receiver_fn)
        return obj._saved_model_signatures()
    raise TypeError(
        f"export_saved_model: cannot export a {type(obj).__name__}; expected a Sequential model, a flowlearn "
        "estimator, a scikit-learn Pipeline of scalers ending in a flowlearn estimator, or a model_fn Estimator."
    )


# -- writing -------------------------------------------------------------------------------------------
class _ArrayTable:
    """The arrays of every graph under one name each; equal arrays (dtype, shape, bytes) are stored once."""

    def __init__(self):
        self.arrays = {}
        self._by_content = {}

    def add(self, name, array, taken):
        array = numpy.asarray(array, order="C")  # not ascontiguousarray, which makes a 0-d array 1-d
        check_numeric(array, f"the array {name!r}", "export_saved_model")
        key = (str(array.dtype), array.shape, hashlib.sha256(array.tobytes()).hexdigest())
        existing = self._by_content.get(key)
        if existing is not None and existing not in taken:
            return existing
        base = name if _NAME.match(name) else "array"
        candidate, k = base, 0
        while candidate in self.arrays or candidate in taken:
            k += 1
            candidate = f"{base}_{k}"
        self.arrays[candidate] = array
        self._by_content.setdefault(key, candidate)
        return candidate


def _graph_json(graph, table):
    spec = graph.to_dict()
    taken = {i["name"] for i in spec["inputs"]} | {n["output"] for n in spec["nodes"]}
    renames = {name: table.add(name, graph.arrays[name], taken) for name in spec["arrays"]}

    def rename(ref):
        return renames.get(ref, ref)

    for node in spec["nodes"]:
        node["inputs"] = [rename(ref) for ref in node["inputs"]]
    spec["output_refs"] = [rename(ref) for ref in spec["output_refs"]]
    spec["arrays"] = {renames[name]: info for name, info in spec["arrays"].items()}
    spec["parameters"] = [rename(name) for name in spec["parameters"]]
    return spec


def _label_json(values, dtype):
    values = numpy.asarray(values)
    if dtype == "string":
        return [str(v) for v in values.tolist()]
    return values.tolist()


class _Assets:
    """The asset files by name; the same content (a vocabulary, the labels) is written once."""

    def __init__(self):
        self.files = {}
        self._by_content = {}

    def add(self, name, data):
        content = json.dumps(data, sort_keys=True, allow_nan=False)
        if content in self._by_content:
            return self._by_content[content]
        stem, _, ext = name.partition(".")
        candidate, k = name, 0
        while candidate in self.files:
            k += 1
            candidate = f"{stem}_{k}.{ext}"
        self.files[candidate] = data
        self._by_content[content] = candidate
        return candidate


def _move_vocabularies(config, assets):
    """A copy of a feature-column config with each vocabulary moved to an asset file (referenced by name)."""
    if isinstance(config, list):
        return [_move_vocabularies(c, assets) for c in config]
    if not isinstance(config, dict):
        return config
    out = {key: _move_vocabularies(value, assets) for key, value in config.items()}
    if out.get("class_name") in ("VocabularyColumn", "VocabularyFileColumn"):
        inner = dict(out["config"])
        field = "vocabulary_list" if out["class_name"] == "VocabularyColumn" else "vocabulary"
        name = assets.add("vocabulary.json", {"vocabulary": list(inner[field])})
        inner[field] = {"asset": name}
        if out["class_name"] == "VocabularyFileColumn":
            inner["vocabulary_file"] = name  # the exporting machine's path means nothing to a server
        out["config"] = inner
    return out


def _signatures_json(signatures, debug_outputs):
    table, assets = _ArrayTable(), _Assets()
    graphs, entries, graph_names = {}, {}, {}
    signatures = dict(signatures)
    if debug_outputs:
        signatures["debug"] = _signatures.debug_signature(signatures["serving_default"])
        maps = _signatures.feature_map_signature(signatures["serving_default"])
        if maps is not None:  # a CNN: what the playground draws as feature maps
            signatures["feature_maps"] = maps
    for name, signature in signatures.items():
        if not isinstance(signature, Signature):
            raise TypeError(f"export_saved_model: signature {name!r} is a {type(signature).__name__}, not a Signature.")
        graph_name = graph_names.get(id(signature.graph))
        if graph_name is None:
            graph_name = graph_names[id(signature.graph)] = name
            graphs[graph_name] = _graph_json(signature.graph, table)
        entry = {"method_name": signature.method_name, "inputs": signature.inputs, "outputs": signature.outputs,
                 "graph": graph_name, "preprocess": None, "lookups": {}}
        if signature.preprocess is not None:
            pre = signature.preprocess
            asset = assets.add("feature_columns.json", {
                "columns": _move_vocabularies(pre["columns"], assets), "value_widths": pre["value_widths"]})
            entry["preprocess"] = {"kind": pre["kind"], "output": pre["output"], "asset": asset}
        for output, lookup in signature.lookups.items():
            labels = lookup.get("values")
            entry["lookups"][output] = {"source": lookup["source"], "dtype": lookup["dtype"],
                                        "asset": assets.add(lookup["asset"], {"dtype": lookup["dtype"],
                                                                              "values": labels})}
        entries[name] = entry
    return entries, graphs, table.arrays, assets.files


def write_saved_model(obj, export_dir, *, serving_input_receiver_fn=None, as_text=None, debug_outputs=False):
    """Write ``obj``'s SavedModel into the folder ``export_dir`` (new, or empty) and return its path.

    The files are written in a temporary sibling folder that is renamed to ``export_dir`` at the end,
    so a reader (a server polling for versions) never sees half an export. ``as_text=True`` indents
    ``saved_model.json``; ``debug_outputs=True`` adds a ``debug`` signature whose outputs are every
    intermediate value of ``serving_default`` and, for a convolutional model, a ``feature_maps`` signature whose one
    output, ``conv1``, is the first convolution's activations (the playground of ``flowlearn serve`` draws them).
    """
    signatures = signature_graphs(obj, serving_input_receiver_fn)
    return _write(signatures, os.fspath(export_dir), as_text=as_text, debug_outputs=debug_outputs)


def _write(signatures, export_dir, *, as_text=None, debug_outputs=False):
    entries, graphs, arrays, assets = _signatures_json(signatures, debug_outputs)
    from .. import __version__

    document = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "flowlearn_version": __version__,
        "signatures": entries, "graphs": graphs,
        "variables": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()},
        "assets": sorted(assets),
    }
    text = json.dumps(document, indent=1 if as_text else None, allow_nan=False)
    export_dir = os.path.abspath(export_dir)
    parent, base = os.path.split(export_dir)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or os.listdir(export_dir)):
        raise ValueError(f"export_saved_model: {export_dir!r} already exists and is not an empty folder.")
    temporary = os.path.join(parent, f".{base}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    os.makedirs(os.path.join(temporary, VARIABLES_DIR))
    os.makedirs(os.path.join(temporary, ASSETS_DIR))
    try:
        with atomic_write(os.path.join(temporary, VARIABLES_DIR, VARIABLES_FILE)) as stream:
            write_archive(stream, [], [(name + ".npy", array) for name, array in arrays.items()])
        for name, data in assets.items():
            with atomic_write(os.path.join(temporary, ASSETS_DIR, name)) as stream:
                stream.write(json.dumps(data, allow_nan=False).encode("utf-8"))
        with atomic_write(os.path.join(temporary, MODEL_FILE)) as stream:
            stream.write(text.encode("utf-8"))
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)  # empty (checked above): the rename puts the export in its place
        os.rename(temporary, export_dir)
        sync_folder(parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)  # ours alone: nothing else writes there
        raise
    return export_dir


def export_saved_model(obj, export_dir_base, *, serving_input_receiver_fn=None, as_text=None, debug_outputs=False):
    """Export ``obj`` as a SavedModel under ``export_dir_base/<timestamp>/`` and return that path.

    Parameters
    ----------
    obj : Sequential, flowlearn estimator, Pipeline or Estimator
        A built Sequential model, a fitted scikit-learn estimator of flowlearn, a scikit-learn Pipeline
        of scalers (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler; folded into the graph, so
        the served model takes raw features) ending in one, or a trained model_fn Estimator.
    export_dir_base : str or path
        The version folder is named by the current time in whole seconds (one more if that is taken),
        so TF Serving-style servers pick the newest.
    serving_input_receiver_fn : callable, optional
        For the model_fn Estimator: returns a :class:`ServingInputReceiver`
        (see :func:`build_raw_serving_input_receiver_fn`).
    as_text : bool, optional
        Indent ``saved_model.json`` for reading.
    debug_outputs : bool
        Add a ``debug`` signature exposing every intermediate value of ``serving_default`` and, when its graph
        has a convolution, a ``feature_maps`` signature with one output, ``conv1``: the first convolution's
        activations (after its bias and activation), (None, H', W', filters).

    Examples
    --------
    >>> import numpy as np, flowlearn as fl
    >>> model = fl.Sequential([fl.layers.Input((3,)), fl.layers.Dense(2)])
    >>> path = fl.io.export_saved_model(model, "exports")  # doctest: +SKIP
    >>> fl.io.load_saved_model(path).predict(np.ones((4, 3)))["outputs"].shape  # doctest: +SKIP
    (4, 2)
    """
    signatures = signature_graphs(obj, serving_input_receiver_fn)
    base = os.path.abspath(os.fspath(export_dir_base))
    os.makedirs(base, exist_ok=True)
    version = int(time.time())
    while True:
        target = os.path.join(base, str(version))
        if not os.path.exists(target):
            try:
                return _write(signatures, target, as_text=as_text, debug_outputs=debug_outputs)
            except (ValueError, OSError):
                if not os.path.exists(target):
                    raise  # a real failure, not another export taking this name first
        version += 1  # taken (another export this second): the next second's name


# -- loading -------------------------------------------------------------------------------------------
def _refuse(path, problem):
    raise ValueError(f"load_saved_model: {path!r}: {problem}")


def _check_shape(where, shape, batch_ok, path):
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        _refuse(path, f"{where} declares shape {shape!r}; expected a list of at most {MAX_RANK} sizes.")
    for i, d in enumerate(shape):
        if d is None and (batch_ok or i == 0):
            continue
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            _refuse(path, f"{where} declares shape {shape!r}; sizes must be non-negative integers (None: any).")
    elements = math.prod(d for d in shape if d is not None)
    if elements > MAX_ELEMENTS:
        _refuse(path, f"{where} declares shape {shape!r} ({elements} elements), beyond the limit of {MAX_ELEMENTS}.")
    return tuple(shape)


def _check_dtype(where, dtype, path, allow_string=False):
    if dtype in _DTYPES or (allow_string and dtype == "string"):
        return dtype
    _refuse(path, f"{where} declares dtype {dtype!r}; expected one of {list(_DTYPES)}"
                  f"{' or string' if allow_string else ''}.")


def _check_name(where, name, path, pattern=_NAME):
    if not isinstance(name, str) or len(name) > 512 or not pattern.match(name) or ".." in name.split("/"):
        _refuse(path, f"{where} has the name {name!r}; expected letters, digits, '_', '.', '-' and '/' separators "
                      "(no empty, '.' or '..' parts).")
    return name


def _check_key(where, name, path):
    # Input and output names are only ever JSON keys (never file names), so any printable text will do:
    # a DataFrame column such as 'petal length (cm)' names a raw-feature input.
    if not isinstance(name, str) or not _KEY.match(name):
        _refuse(path, f"{where} has the name {name!r:.100}; expected 1 to 512 printable characters.")
    return name


def _tensor_specs(where, specs, path, allow_string):
    if not isinstance(specs, list):
        _refuse(path, f"{where} must be a list of {{name, dtype, shape}}; got {type(specs).__name__}.")
    names = set()
    out = []
    for spec in specs:
        if not isinstance(spec, dict) or set(spec) - {"name", "dtype", "shape", "batch"}:
            _refuse(path, f"{where}: expected {{name, dtype, shape}} entries; got {spec!r:.200}.")
        name = _check_key(where, spec.get("name"), path)
        if name in names:
            _refuse(path, f"{where}: the name {name!r} appears twice.")
        names.add(name)
        out.append({"name": name, "dtype": _check_dtype(f"{where} {name!r}", spec.get("dtype"), path, allow_string),
                    "shape": list(_check_shape(f"{where} {name!r}", spec.get("shape"), False, path))})
    return out


def _check_graph(name, spec, variables, path):
    """Every structural fact Graph.from_dict and Graph.run rely on, checked against the declarations."""
    where = f"graph {name!r}"
    if not isinstance(spec, dict):
        _refuse(path, f"{where} must be an object.")
    if spec.get("format_version") != 2:
        _refuse(path, f"{where} has graph format_version {spec.get('format_version')!r}; expected 2.")
    inputs = _tensor_specs(f"{where} inputs", spec.get("inputs"), path, allow_string=False)
    for given, checked in zip(spec["inputs"], inputs):
        if not isinstance(given.get("batch", False), bool):
            _refuse(path, f"{where} input {checked['name']!r}: 'batch' must be true or false.")
    arrays = spec.get("arrays")
    if not isinstance(arrays, dict):
        _refuse(path, f"{where} must declare its arrays as an object.")
    for array_name, info in arrays.items():
        if array_name not in variables:
            _refuse(path, f"{where} reads the array {array_name!r}, which the variables do not declare.")
        if info != variables[array_name]:
            _refuse(path, f"{where} declares array {array_name!r} as {info!r}; the variables declare "
                          f"{variables[array_name]!r}.")
    defined = {i["name"] for i in inputs} | set(arrays)
    if len(defined) != len(inputs) + len(arrays):
        _refuse(path, f"{where}: an input and an array share a name.")
    nodes = spec.get("nodes")
    if not isinstance(nodes, list) or len(nodes) > MAX_NODES:
        _refuse(path, f"{where} must have a list of at most {MAX_NODES} nodes.")
    for index, node in enumerate(nodes):
        at = f"{where} node {index}"
        if not isinstance(node, dict):
            _refuse(path, f"{at} must be an object.")
        op = node.get("op")
        if op not in REGISTRY:
            _refuse(path, f"{at} uses the op {op!r}, which is not a flowlearn primitive; nothing was run.")
        refs = node.get("inputs")
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            _refuse(path, f"{at} ({op}) must list its inputs by name.")
        for ref in refs:
            if ref not in defined:
                # Nodes run in order: a reference to a later node (a cycle) is as undefined as a missing one.
                _refuse(path, f"{at} ({op}) reads {ref!r}, which no input, array or earlier node defines "
                              "(an undefined value or a cycle).")
        if not isinstance(node.get("attrs"), dict):
            _refuse(path, f"{at} ({op}) must have an attrs object.")
        output = _check_name(f"{at} ({op}) output", node.get("output"), path)
        if output in defined:
            _refuse(path, f"{at} ({op}) redefines {output!r}.")
        _check_dtype(f"{at} ({op})", node.get("dtype"), path)
        _check_shape(f"{at} ({op})", node.get("shape"), True, path)
        if not isinstance(node.get("batch", False), bool):
            _refuse(path, f"{at} ({op}): 'batch' must be true or false.")
        defined.add(output)
    outputs, refs = spec.get("outputs"), spec.get("output_refs")
    if not isinstance(outputs, list) or not isinstance(refs, list) or len(outputs) != len(refs) or \
            not all(isinstance(o, str) for o in outputs):
        _refuse(path, f"{where} must name its outputs and their values (two lists of one length).")
    for ref in refs:
        if ref not in defined:
            _refuse(path, f"{where} outputs {ref!r}, which nothing defines.")
    if spec.get("output_kind") != "dict":
        _refuse(path, f"{where}: output_kind must be 'dict'; got {spec.get('output_kind')!r}.")
    if spec.get("fixed_batch") is not None:
        _refuse(path, f"{where} only replays at one batch size; a SavedModel graph must take any.")
    parameters = spec.get("parameters", [])
    if not isinstance(parameters, list) or not all(p in arrays for p in parameters):
        _refuse(path, f"{where}: parameters must name its arrays.")
    return inputs


def _read_json(path, limit, what):
    try:
        size = os.path.getsize(path)
    except OSError:
        _refuse(os.path.dirname(path), f"{what} {os.path.basename(path)!r} is missing.")
    if not os.path.isfile(path) or os.path.islink(path):
        _refuse(path, f"{what} must be a regular file.")
    if size > limit:
        _refuse(path, f"{what} is {size} bytes, beyond the limit of {limit}.")
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=lambda c: _refuse(path, f"{what} holds {c}."))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        _refuse(path, f"{what} is not valid JSON ({type(error).__name__}: {str(error)[:200]}).")


def _read_variables(folder, declared):
    variables_dir = os.path.join(folder, VARIABLES_DIR)
    if not os.path.isdir(variables_dir):
        _refuse(folder, f"the {VARIABLES_DIR}/ folder is missing.")
    extra = sorted(set(os.listdir(variables_dir)) - {VARIABLES_FILE})
    if extra:
        _refuse(variables_dir, f"holds unexpected files {extra[:5]}; only {VARIABLES_FILE} (numeric arrays) is read, "
                               "and nothing else is allowed there.")
    path = os.path.join(variables_dir, VARIABLES_FILE)
    if not os.path.isfile(path) or os.path.islink(path):
        _refuse(variables_dir, f"{VARIABLES_FILE} is missing.")
    file_size = os.path.getsize(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        _refuse(path, f"is not a zip of .npy arrays ({error}).")
    with archive:
        infos = archive.infolist()
        entries = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir() or name in entries:
                _refuse(path, f"holds the entry {name!r}; expected one <array name>.npy per array.")
            _check_name(f"{VARIABLES_FILE} entry", name[:-4], path)
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
                _refuse(path, f"entry {name!r} is compressed or larger than the file; arrays are stored uncompressed.")
            entries[name] = info
        wanted = {f"{name}.npy" for name in declared}
        if set(entries) != wanted:
            missing, unknown = sorted(wanted - set(entries)), sorted(set(entries) - wanted)
            _refuse(path, f"does not match the declared variables (missing {missing[:5]}, undeclared {unknown[:5]}).")
        total = sum(math.prod(info["shape"]) * numpy.dtype(info["dtype"]).itemsize for info in declared.values())
        if total > file_size:
            _refuse(path, f"the declared variables need {total} bytes but the file holds {file_size}.")
        arrays = {}
        for name, info in declared.items():
            try:
                array = read_array(archive, f"{name}.npy", path, "load_saved_model")
            except zipfile.BadZipFile as error:
                _refuse(path, f"entry {name!r} is damaged ({error}).")
            if str(array.dtype) != info["dtype"] or list(array.shape) != info["shape"]:
                _refuse(path, f"array {name!r} holds {array.dtype} of shape {list(array.shape)}; the graph declares "
                              f"{info['dtype']} of shape {info['shape']}.")
            arrays[name] = array
    return arrays


def _read_asset(folder, name, cache):
    if name in cache:
        return cache[name]
    assets_dir = os.path.join(folder, ASSETS_DIR)
    _check_name("asset reference", name, folder, _ASSET_NAME)
    data = _read_json(os.path.join(assets_dir, name), MAX_ASSET_BYTES, f"asset {name!r}")
    cache[name] = data
    return data


def _restore_vocabularies(config, folder, cache, path):
    """The feature-column config with each vocabulary asset reference replaced by the vocabulary."""
    if isinstance(config, list):
        return [_restore_vocabularies(c, folder, cache, path) for c in config]
    if not isinstance(config, dict):
        return config
    out = {key: _restore_vocabularies(value, folder, cache, path) for key, value in config.items()}
    kind = out.get("class_name")
    if kind in ("VocabularyColumn", "VocabularyFileColumn"):
        inner = out.get("config")
        field = "vocabulary_list" if kind == "VocabularyColumn" else "vocabulary"
        reference = inner.get(field) if isinstance(inner, dict) else None
        if not isinstance(reference, dict) or set(reference) != {"asset"}:
            # A VocabularyFileColumn without its vocabulary would open the file its config names.
            _refuse(path, f"feature column {kind} must reference its vocabulary as {{'asset': name}}; got "
                          f"{reference!r:.200}.")
        data = _read_asset(folder, reference["asset"], cache)
        vocabulary = data.get("vocabulary") if isinstance(data, dict) else None
        if not isinstance(vocabulary, list) or not all(isinstance(v, (str, int)) for v in vocabulary):
            _refuse(path, f"vocabulary asset {reference['asset']!r} must hold {{'vocabulary': [strings or ints]}}.")
        out["config"] = dict(inner, **{field: vocabulary})
    return out


def _labels(data, dtype, path, name):
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list) or data.get("dtype") != dtype:
        _refuse(path, f"label asset {name!r} must hold {{'dtype': {dtype!r}, 'values': [...]}}.")
    if dtype == "string":
        if not all(isinstance(v, str) for v in values):
            _refuse(path, f"label asset {name!r} must hold strings.")
        return numpy.array(values, dtype=str) if values else numpy.array([], dtype=str)
    _check_dtype(f"label asset {name!r}", dtype, path)
    if not all(isinstance(v, (int, float, bool)) for v in values):
        _refuse(path, f"label asset {name!r} must hold numbers.")
    return numpy.array(values, dtype=dtype)


def _coerce(name, value, spec):
    """``value`` as an array of the input's dtype and shape, or a ValueError fit for a REST client."""
    dtype, shape = spec["dtype"], spec["shape"]
    expected = f"dtype {dtype} and shape {_signatures._shape_text(shape)}"
    try:
        array = numpy.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"input {name!r}: expected {expected}; received a value that is not a rectangular array "
                         f"({error}).") from None
    if dtype == "string":
        flat = array.reshape(-1)
        if array.dtype.kind == "S":
            array = numpy.char.decode(array, "utf-8").astype(object)
        elif array.dtype.kind == "U":
            array = array.astype(object)
        elif array.dtype.kind != "O" or not all(isinstance(v, (str, bytes)) for v in flat):
            raise ValueError(f"input {name!r}: expected {expected}; received dtype {array.dtype}.")
        else:
            array = numpy.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in flat],
                                dtype=object).reshape(array.shape)
    else:
        target = numpy.dtype(dtype)
        kind = array.dtype.kind
        # Numbers to numbers, never silently changed: booleans only for a bool input, whole numbers in range
        # for an integer input (a float input takes any number).
        ok = kind in "iuf" and target.kind != "b" or kind == "b" and target.kind == "b"
        if ok and target.kind in "iu" and array.size:
            info = numpy.iinfo(target)
            with numpy.errstate(invalid="ignore"):
                ok = bool(numpy.all(numpy.mod(array, 1) == 0)) if kind == "f" else True
                ok = ok and bool(array.min() >= info.min and array.max() <= info.max)
        if not ok:
            raise ValueError(f"input {name!r}: expected {expected}; received {array.dtype} values"
                             f"{' out of its range or not whole' if kind in 'iuf' and target.kind != 'b' else ''}.")
        array = array.astype(target, copy=False)
    if array.ndim != len(shape) or any(e is not None and e != n for e, n in zip(shape, array.shape)):
        received = _signatures._shape_text(list(array.shape))
        raise ValueError(f"input {name!r}: expected {expected}; received shape {received}.")
    return array


class LoadedModel:
    """A SavedModel read back by :func:`load_saved_model`: call :meth:`predict` (or the object itself).

    Attributes
    ----------
    signatures : dict of str to Signature
    signature_def : dict
        TF Serving's metadata (``GET /v1/models/NAME/metadata`` puts it under ``"signature_def"``).
    version : int or None
        The folder's name when numeric.
    path : str
    """

    def __init__(self, path, signatures, encoders, labels, version):
        self.path = path
        self.signatures = signatures
        self.version = version
        self._encoders = encoders
        self._labels = labels
        self._lock = threading.Lock()  # feature-column encoders record widths: one call at a time through them

    @property
    def signature_def(self):
        return {name: signature.to_signature_def() for name, signature in self.signatures.items()}

    def _signature(self, name):
        if not isinstance(name, str) or name not in self.signatures:
            raise ValueError(f"unknown signature {name!r}; this model has {sorted(self.signatures)}.")
        return self.signatures[name]

    def predict(self, inputs, signature="serving_default"):
        """Run a signature on ``inputs`` and return ``{output name: ndarray}``.

        ``inputs`` is a dict of input name -> array-like (a DataFrame works too), or a single array-like
        when the signature has one input. Inputs are checked against the signature (names, dtype, shape
        with any batch size): a mismatch is a ValueError naming the input, what was expected and what
        was received.
        """
        sig = self._signature(signature)
        specs = {spec["name"]: spec for spec in sig.inputs}
        if hasattr(inputs, "columns") and hasattr(inputs, "to_numpy"):  # a DataFrame: one input per column
            inputs = {str(c): inputs[c].to_numpy() for c in inputs.columns}
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise ValueError(f"signature {signature!r} takes inputs {sorted(specs)}: give a dict of them.")
            inputs = {next(iter(specs)): inputs}
        unknown = sorted(set(map(str, inputs)) - set(specs))
        missing = sorted(set(specs) - set(map(str, inputs)))
        if unknown or missing:
            raise ValueError(f"signature {signature!r} takes inputs {sorted(specs)}; missing {missing}, unknown "
                             f"{unknown}.")
        arrays = {str(k): _coerce(str(k), v, specs[str(k)]) for k, v in inputs.items()}
        sizes = {name: a.shape[0] for name, a in arrays.items() if specs[name]["shape"][:1] == [None]}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"inputs must have the same batch size (first dimension); got {sizes}.")
        if sig.preprocess is not None:
            encoder = self._encoders[signature]
            with self._lock:
                encoded = encoder.encode({name: arrays[name] for name in specs})
            graph_inputs = [encoded]
        else:
            graph_inputs = [arrays[spec["name"]] for spec in sig.graph.inputs]
        try:
            results = sig.graph.run(*graph_inputs)
        except MemoryError:
            rows = len(graph_inputs[0]) if graph_inputs and numpy.ndim(graph_inputs[0]) else None
            raise ValueError(f"signature {signature!r}: the request ({rows} rows) needs more memory than this "
                             "machine has; send fewer rows at a time.") from None
        out = {}
        for spec in sig.outputs:
            name = spec["name"]
            lookup = sig.lookups.get(name)
            out[name] = results[name] if lookup is None else self._labels[(signature, name)][results[lookup["source"]]]
        return out

    __call__ = predict

    def __repr__(self):
        return f"LoadedModel({self.path!r}, signatures={sorted(self.signatures)})"


def _trial_run(graph, name, path):
    """Replay ``graph`` once on a batch of one row of zeros (a valid input of every exported graph).

    The declarations were checked statically; this catches what only running shows - attrs a primitive
    rejects, a node whose output disagrees with its declaration, an allocation beyond memory - at load
    time, as a refusal, rather than at a client's first request. Only flowlearn's primitives run.
    """
    shapes = [[1] + spec["shape"][1:] if spec.get("batch") else spec["shape"] for spec in graph.inputs]
    if any(d is None for shape in shapes for d in shape):
        return  # a free size other than the batch: no single example to try
    try:
        with numpy.errstate(all="ignore"):
            graph.run(*[numpy.zeros(shape, dtype=spec["dtype"]) for shape, spec in zip(shapes, graph.inputs)])
    except Exception as error:  # noqa: BLE001 - whatever a damaged graph makes a primitive raise
        _refuse(path, f"graph {name!r} does not run on one row of zeros ({type(error).__name__}: {str(error)[:300]}).")


def _check_header(document, model_path):
    """The format name and version, and the variables' declarations (names, dtypes, fixed shapes)."""
    found = document.get("format") if isinstance(document, dict) else None
    if found != FORMAT_NAME:
        _refuse(model_path, f"is not a flowlearn SavedModel (format {found!r}; expected {FORMAT_NAME!r}).")
    version = document.get("format_version")
    if version not in _READABLE_VERSIONS or isinstance(version, bool):
        _refuse(model_path, f"has format_version {version!r}; this flowlearn reads {list(_READABLE_VERSIONS)} (a "
                            "newer flowlearn wrote it?).")
    variables = document.get("variables")
    if not isinstance(variables, dict):
        _refuse(model_path, "must declare its variables.")
    for name, info in variables.items():
        _check_name("variable", name, model_path)
        if not isinstance(info, dict) or set(info) != {"dtype", "shape"}:
            _refuse(model_path, f"variable {name!r} must be declared as {{dtype, shape}}.")
        _check_dtype(f"variable {name!r}", info["dtype"], model_path)
        _check_shape(f"variable {name!r}", info["shape"], False, model_path)
        if None in info["shape"]:
            _refuse(model_path, f"variable {name!r} must have a fixed shape.")
    graphs, signatures = document.get("graphs"), document.get("signatures")
    if not isinstance(graphs, dict) or not isinstance(signatures, dict) or "serving_default" not in signatures:
        _refuse(model_path, "must have graphs and signatures, serving_default among them.")
    return variables, graphs, signatures


def _signature_lookups(name, entry, outputs, graph, folder, cache, model_path):
    """The signature's label lookups, checked, and their label tables read from the assets."""
    lookups = entry.get("lookups") or {}
    if not isinstance(lookups, dict):
        _refuse(model_path, f"signature {name!r}: lookups must be an object.")
    graph_outputs, tables = set(graph.outputs), {}
    for output in outputs:
        lookup = lookups.get(output["name"])
        if lookup is None:
            if output["name"] not in graph_outputs:
                _refuse(model_path, f"signature {name!r} output {output['name']!r} is not an output of its graph.")
            continue
        if not isinstance(lookup, dict) or lookup.get("source") not in graph_outputs:
            _refuse(model_path, f"signature {name!r} lookup {output['name']!r} must name a graph output as source.")
        asset = lookup.get("asset")
        tables[output["name"]] = _labels(_read_asset(folder, asset, cache), output["dtype"], model_path, asset)
    return {key: lookups[key] for key in tables}, tables


def load_saved_model(path):
    """Load a SavedModel folder written by :func:`export_saved_model`; returns a :class:`LoadedModel`.

    Nothing from the files is run or unpickled: see the module docstring for what is checked. Files
    from untrusted sources are safe to load; anything malformed is a ValueError naming the file.
    """
    folder = os.path.abspath(os.fspath(path))
    if not os.path.isdir(folder):
        _refuse(folder, "is not a SavedModel folder (it does not exist or is not a folder).")
    try:
        return _load(folder)
    except RecursionError:  # JSON nested deeper than any export writes (attrs, configs)
        _refuse(folder, "its JSON is nested too deeply to be an export.")


def _load(folder):
    model_path = os.path.join(folder, MODEL_FILE)
    document = _read_json(model_path, MAX_JSON_BYTES, MODEL_FILE)
    variables, graphs, signatures_json = _check_header(document, model_path)
    graph_inputs = {name: _check_graph(name, spec, variables, model_path) for name, spec in graphs.items()}
    arrays = _read_variables(folder, variables)
    built, signatures, encoders, labels, cache = {}, {}, {}, {}, {}
    for name, entry in signatures_json.items():
        _check_name("signature", name, model_path)
        if not isinstance(entry, dict) or entry.get("graph") not in graphs or entry.get("method_name") not in METHODS:
            _refuse(model_path, f"signature {name!r} must name one of the graphs and a TF Serving method.")
        graph_name = entry["graph"]
        if graph_name not in built:
            spec = graphs[graph_name]
            graph = Graph.from_dict(spec, {k: arrays[k] for k in spec["arrays"]})
            graph._arrays_on(numpy)  # filled now, so that concurrent predictions only read the cache
            _trial_run(graph, graph_name, model_path)
            built[graph_name] = graph
        graph = built[graph_name]
        inputs = _tensor_specs(f"signature {name!r} inputs", entry.get("inputs"), model_path, allow_string=True)
        outputs = _tensor_specs(f"signature {name!r} outputs", entry.get("outputs"), model_path, allow_string=True)
        lookups, tables = _signature_lookups(name, entry, outputs, graph, folder, cache, model_path)
        labels.update({(name, output): table for output, table in tables.items()})
        preprocess = entry.get("preprocess")
        if preprocess is not None:
            if not isinstance(preprocess, dict) or preprocess.get("kind") != "feature_columns" or \
                    [i["name"] for i in graph_inputs[graph_name]] != [preprocess.get("output")]:
                _refuse(model_path, f"signature {name!r}: unknown preprocess {preprocess!r:.200}.")
            config = _read_asset(folder, preprocess.get("asset"), cache)
            encoders[name], preprocess = _feature_encoder(config, folder, cache, model_path, graph)
        elif [(i["name"], i["dtype"], i["shape"]) for i in inputs] != \
                [(i["name"], i["dtype"], i["shape"]) for i in graph_inputs[graph_name]]:
            _refuse(model_path, f"signature {name!r} inputs differ from its graph's inputs.")
        signatures[name] = Signature(inputs, outputs, graph, entry["method_name"], preprocess, lookups)
    base = os.path.basename(folder)
    return LoadedModel(folder, signatures, encoders, labels, int(base) if base.isdigit() else None)


def _feature_encoder(config, folder, cache, path, graph):
    """A DenseFeatures layer that encodes raw features as the exported model's did, built from JSON only."""
    from .feature_column import DenseFeatures, deserialize

    if not isinstance(config, dict) or not isinstance(config.get("columns"), list) or \
            not isinstance(config.get("value_widths"), dict):
        _refuse(path, "feature_columns asset must hold {'columns': [...], 'value_widths': {...}}.")
    columns_json = _restore_vocabularies(config["columns"], folder, cache, path)
    try:
        columns = [deserialize(c) for c in columns_json]
        encoder = DenseFeatures(columns, value_widths=config["value_widths"], name="features")
    except (ValueError, TypeError, KeyError) as error:
        _refuse(path, f"feature_columns asset does not describe valid feature columns ({error}).")
    if encoder.encoded_width != graph.inputs[0]["shape"][1]:
        _refuse(path, "feature_columns asset does not match the graph's input width.")
    return encoder, {"kind": "feature_columns", "output": graph.inputs[0]["name"], "columns": columns_json,
                     "value_widths": config["value_widths"]}


def _register():
    from ..layers.sequential import EXPORTERS

    EXPORTERS["saved_model"] = write_saved_model  # Sequential.export(path) looks it up: layers never import io


_register()
