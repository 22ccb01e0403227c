"""Pickle-free files for the scikit-learn estimators: ``est.save(path)`` and ``flowlearn.estimators.load(path)``.

The file belongs to the format family of model files and checkpoints: a zip archive (see
``flowlearn.core._archive``) of ``estimator.json`` and ``arrays/<n>.npy``. ``estimator.json`` holds the
class name, ``get_params()`` and every fitted attribute (``classes_``, ``n_features_in_``,
``feature_names_in_``, the layer configs, the optimizer's hyperparameters, the random streams' states),
as JSON; arrays of numbers (weights, optimizer slots, standardization moments) are ``.npy`` entries
that the JSON refers to. What JSON has no type for is written as a small tagged object (a tuple, a
numpy scalar, an array of strings, a numpy random Generator, a flowlearn optimizer or feature
column), from a closed list.

What gets stored is exactly the estimator's pickling state (``__getstate__``), so a loaded estimator is
the one unpickling would give: it predicts the same, and trains on (warm start, ``partial_fit``) with
the same optimizer state and random streams. Loading never imports or calls anything named in the
file: the class comes from an allow-list (the estimators exported by ``flowlearn.estimators``),
layers and optimizers from flowlearn's registries, bit generators from numpy's four, and arrays are
read with the checks of ``_archive.read_array`` (numeric dtypes only, so pickle is never needed).
"""
import json
import math
import numbers
import os

import numpy

from ..core import optimizers
from ..core._archive import check_numeric, read_archive, read_array, read_header, write_archive
from ..core._atomic import atomic_write, remove_stale_temporaries
from ..io import feature_column

__all__ = ["save_estimator", "load"]

FORMAT = "flowlearn.estimator"
FORMAT_VERSION = 1
HEADER_NAME = "estimator.json"
_TAG = "__fl__"  # the key that marks a tagged object; a plain dict using it is stored in the tagged form
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class _Encoder:
    """Turns the estimator's state into JSON, collecting its numeric arrays as entries beside it."""

    def __init__(self):
        self.arrays = []

    def _array_entry(self, array):
        name = f"arrays/{len(self.arrays):05d}.npy"
        self.arrays.append((name, array))
        return {_TAG: "array", "entry": name}

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral) and type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
        if isinstance(value, numpy.generic):
            if isinstance(value, numpy.str_):
                return str(value)
            array = numpy.asarray(value)
            check_numeric(array, where, "save")
            return {_TAG: "scalar", "dtype": array.dtype.str, "value": self.encode(value.item(), where)}
        if isinstance(value, numpy.ndarray):
            return self._encode_array(value, where)
        if isinstance(value, tuple):
            return {_TAG: "tuple", "items": [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value) and _TAG not in value:
                return {key: self.encode(item, f"{where}[{key!r}]") for key, item in value.items()}
            return {_TAG: "dict", "items": [[self.encode(key, where), self.encode(item, f"{where}[{key!r}]")]
                                            for key, item in value.items()]}
        if isinstance(value, numpy.random.Generator):
            return {_TAG: "generator", "state": self.encode(value.bit_generator.state, where)}
        if isinstance(value, numpy.random.RandomState):
            return {_TAG: "random_state", "state": self.encode(value.get_state(legacy=False), where)}
        if isinstance(value, optimizers.Optimizer):
            return {_TAG: "optimizer", "config": self.encode(optimizers.serialize(value), where)}
        if isinstance(value, feature_column.FeatureColumn):
            try:
                config = feature_column.serialize(value)
            except ValueError as error:  # a Python callable inside (normalizer_fn): code, not data
                raise TypeError(f"save: cannot store {where} without pickle: {error}") from None
            return {_TAG: "feature_column", "config": self.encode(config, where)}
        raise TypeError(
            f"save: cannot store {where} without pickle: expected numbers, strings, arrays, lists, tuples, dicts, "
            f"random generators, flowlearn optimizers or feature columns; received {type(value).__module__}.{type(value).__qualname__}."
        )

    def _encode_array(self, array, where):
        if array.dtype.kind in "biuf" and not array.dtype.hasobject:
            return self._array_entry(array)
        if array.dtype.kind in "US" or array.dtype == object:
            # Labels and feature names: strings (or Python numbers in an object array) as a JSON list.
            items = [self.encode(item, where) for item in array.ravel().tolist()]
            if not all(item is None or isinstance(item, (str, int, float, bool)) for item in items):
                raise TypeError(f"save: cannot store {where} without pickle: an object array holding "
                                f"{sorted({type(item).__name__ for item in array.ravel().tolist()})}.")
            return {_TAG: "list_array", "dtype": array.dtype.str, "shape": list(array.shape), "items": items}
        raise TypeError(f"save: cannot store {where} without pickle: an array of dtype {array.dtype}.")


class _Decoder:
    """The inverse of :class:`_Encoder`, reading arrays from the open archive as they are referred to."""

    def __init__(self, archive, path):
        self.archive, self.path = archive, path

    def damaged(self, what):
        return ValueError(f"load: {self.path!r} is damaged: {what}.")

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        tag = value.get(_TAG)
        if tag is None:
            return {key: self.decode(item) for key, item in value.items()}
        if tag == "array":
            return read_array(self.archive, value.get("entry"), self.path, "load")
        if tag == "float":
            if value.get("value") not in ("nan", "inf", "-inf"):
                raise self.damaged(f"a float written as {value.get('value')!r}")
            return float(value["value"])
        if tag == "scalar":
            dtype = numpy.dtype(value["dtype"])
            if dtype.kind not in "biuf":
                raise self.damaged(f"a scalar of dtype {dtype}")
            return dtype.type(self.decode(value["value"]))
        if tag == "tuple":
            return tuple(self.decode(item) for item in value["items"])
        if tag == "dict":
            return {_hashable(self.decode(key)): self.decode(item) for key, item in value["items"]}
        if tag == "list_array":
            dtype = numpy.dtype(value["dtype"])
            if dtype.kind not in "USO":
                raise self.damaged(f"a list array of dtype {dtype}")
            items = self.decode(value["items"])
            if not all(item is None or isinstance(item, (str, int, float, bool)) for item in items):
                raise self.damaged("a list array holding something other than strings and numbers")
            array = numpy.empty(len(items), dtype=dtype)
            array[:] = items
            return array.reshape(value["shape"])
        if tag == "generator":
            state = self.decode(value["state"])
            name = state.get("bit_generator") if isinstance(state, dict) else None
            if name not in _BIT_GENERATORS:
                raise self.damaged(f"a random generator of unknown kind {name!r} (expected one of {_BIT_GENERATORS})")
            bit_generator = getattr(numpy.random, name)()
            bit_generator.state = state
            return numpy.random.Generator(bit_generator)
        if tag == "random_state":
            generator = numpy.random.RandomState()
            generator.set_state(self.decode(value["state"]))
            return generator
        if tag == "optimizer":
            return optimizers.deserialize(self.decode(value["config"]))
        if tag == "feature_column":
            return feature_column.deserialize(self.decode(value["config"]))
        raise self.damaged(f"an object tagged {tag!r}, which this flowlearn does not know")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def save_estimator(estimator, path):
    """Write ``estimator`` (fitted or not) to the file ``path``, atomically, without pickle."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"save: expected a file path; {path!r} is a directory.")
    # The pickling state holds the parameters too (strategy already None there: a handle on this run's
    # processes, not part of the model); split them off so the header lists them apart.
    state = estimator.__getstate__()
    params = {key: state.pop(key) for key in estimator._get_param_names()}
    encoder = _Encoder()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_name": type(estimator).__name__,
        "params": {key: encoder.encode(value, f"parameter {key!r}") for key, value in params.items()},
        "state": {key: encoder.encode(value, f"attribute {key!r}") for key, value in state.items()},
    }
    text = json.dumps(header, indent=1)
    folder, base = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(folder, base)
    with atomic_write(path) as stream:
        write_archive(stream, [(HEADER_NAME, text)], encoder.arrays)


def _allowed_classes():
    """The estimator classes a file may name: those exported by flowlearn.estimators, nothing else."""
    from .. import estimators
    from ._base import _BaseNetwork

    exported = (getattr(estimators, name) for name in estimators.__all__)
    return {cls.__name__: cls for cls in exported if isinstance(cls, type) and issubclass(cls, _BaseNetwork)}


def _read(archive, path):
    header = read_header(archive, HEADER_NAME, path, "load", "estimator file", FORMAT, FORMAT_VERSION)
    allowed = _allowed_classes()
    name = header.get("class_name")
    if name not in allowed:
        raise ValueError(
            f"load: {path!r} names the estimator class {name!r}, which is not one of flowlearn's estimators "
            f"({', '.join(sorted(allowed))}); nothing else is loaded from a file."
        )
    cls = allowed[name]
    decoder = _Decoder(archive, path)
    params = decoder.decode(header.get("params"))
    state = decoder.decode(header.get("state"))
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ValueError(f"load: {path!r} is damaged: its params or state is not a JSON object.")
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(f"load: {path!r} gives {name} parameters it does not have: {unknown}.")
    estimator = cls(**params)
    estimator.__setstate__({**params, **state})
    return estimator


def load(path):
    """The estimator saved at ``path`` by ``est.save(path)``: fitted attributes, weights and parameters back.

    Loading is safe on files from anywhere: nothing in the file is imported, evaluated or unpickled.
    A damaged file raises one ValueError naming the file and the problem; a file that cannot be
    opened raises the operating system's error.

    >>> est.save("classifier.flest")  # doctest: +SKIP
    >>> same = flowlearn.estimators.load("classifier.flest")  # doctest: +SKIP
    """
    path = os.fspath(path)
    with open(path, "rb"):
        pass  # a missing or unreadable file is the operating system's error (FileNotFoundError, ...)
    return read_archive(path, "load", "estimator file", lambda archive: _read(archive, path))
