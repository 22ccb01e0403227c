"""Saving and loading whole models: one zip file of JSON and ``.npy`` arrays, never pickle.

Layout of a ``.flmodel`` file (a zip archive, entries stored uncompressed)::

    config.json              format and version, the model config (layer class names and their
                             get_config()), its build input shape, the compile config (optimizer
                             config and step count, loss, metrics) and the list of array entries
    weights/00000.npy ...    the model's weights, in the order of ``model.weights``
    optimizer/00000.npy ...  the optimizer's slot arrays (e.g. Adam's moments)

Loading is safe on files from anywhere: JSON is parsed as data, arrays are read with
``allow_pickle=False`` and must be numeric, each array's declared size is checked against its entry
before anything is read, and layer classes are looked up by name among flowlearn's registered layers
(plus the ``custom_objects`` the caller passes); nothing named in the file is imported or evaluated.
Every entry carries the zip format's CRC-32, checked as it is read, so a damaged file is refused
rather than loaded with altered weights. Whatever is wrong with the file (not a zip, truncated, a
flipped byte, a broken config.json, an unknown layer), loading raises one ValueError that names the
file and the problem; only a file that cannot be opened at all raises the operating system's error.

Saving writes ``.<name>.<pid>.<random>.tmp`` beside the target and renames it over the target. A
writer killed mid-save leaves its temporary behind; the next save to the same target deletes those
whose process no longer exists, and leaves those of live writers alone.
"""
import json
import os
import warnings

from ..core import backend
from ..core import losses as losses_module
from ..core import optimizers as optimizers_module
from ..core._archive import read_archive, read_array, read_header, write_archive
from ..core._atomic import atomic_write, remove_stale_temporaries
from .serialization import deserialize, serialize

__all__ = ["save_model", "load_model"]

FORMAT = "flowlearn.model"
FORMAT_VERSION = 1


def _model_config(model):
    """config.json's content and the (entry name, array) pairs to store beside it."""
    entries = []
    weights = []
    for index, weight in enumerate(model.weights):
        name = f"weights/{index:05d}.npy"
        entries.append((name, backend.to_numpy(weight.data)))
        weights.append({"name": weight.name, "file": name})
    compile_config = model.get_compile_config() if hasattr(model, "get_compile_config") else None
    if getattr(model, "compiled", False) and compile_config is None:
        warnings.warn(
            "save: the model's loss or a metric is a plain function, which cannot be stored as data; the model "
            "is saved without its compile settings and optimizer state (compile it again after loading).",
            UserWarning,
            stacklevel=3,
        )
    optimizer = None
    if compile_config is not None:
        state = model.optimizer.state_dict(model.trainable_weights)
        slots = []
        for index, (key, array) in enumerate(sorted(state["slots"].items())):
            name = f"optimizer/{index:05d}.npy"
            entries.append((name, array))
            slots.append({"key": key, "file": name})
        optimizer = {"state": state["config"], "slots": slots}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": serialize(model),
        "weights": weights,
        "compile": compile_config,
        "optimizer": optimizer,
    }
    return config, entries


def save_model(model, path):
    """Write ``model`` (architecture, weights, compile settings, optimizer state) to the file ``path``.

    The file is written atomically: into a temporary file in the same folder, flushed and synced to
    disk, then renamed over ``path``, so a crash never leaves a half-written model behind. Temporaries
    of earlier saves that were killed are removed (see the module docstring).

    >>> model.save("mnist.flmodel")  # doctest: +SKIP
    >>> restored = flowlearn.load_model("mnist.flmodel")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"save: expected a file path; {path!r} is a directory.")
    config, entries = _model_config(model)
    folder, base = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(folder, base)
    with atomic_write(path) as stream:
        write_archive(stream, [("config.json", json.dumps(config, indent=1))], entries)


def _read_array(archive, name, path):
    return read_array(archive, name, path, "load_model")


def _read_config(archive, path):
    return read_header(archive, "config.json", path, "load_model", "model file", FORMAT, FORMAT_VERSION)


def _compile(model, config, archive, path):
    settings = config["compile"]
    state = config["optimizer"]["state"]
    optimizer = optimizers_module.deserialize({"class_name": state["class_name"], "config": state["config"]})
    loss = settings["loss"]
    loss = losses_module.get(loss) if isinstance(loss, dict) else loss
    model.compile(optimizer=optimizer, loss=loss, metrics=list(settings["metrics"]))
    slots = {item["key"]: _read_array(archive, item["file"], path) for item in config["optimizer"]["slots"]}
    optimizer.load_state_dict({"config": state, "slots": slots}, model.trainable_weights)


def _load(archive, path, compile, custom_objects):
    config = _read_config(archive, path)
    model = deserialize(config["model"], custom_objects)
    arrays = [_read_array(archive, item["file"], path) for item in config["weights"]]
    if arrays or model.weights:
        model.set_weights(arrays)
    if compile and config.get("compile") is not None:
        _compile(model, config, archive, path)
    return model


def load_model(path, compile=True, custom_objects=None):  # noqa: A002 (Keras's argument name)
    """The model saved at ``path`` by :func:`save_model` / ``model.save``, ready to predict or train on.

    Parameters
    ----------
    path : str or os.PathLike
    compile : bool
        Restore the optimizer (with its state, so training continues where it stopped), loss and metrics.
    custom_objects : dict of str to Layer subclass, optional
        Your own layer classes, by the class names stored in the file.

    >>> model = flowlearn.load_model("mnist.flmodel")  # doctest: +SKIP
    """
    path = os.fspath(path)
    with open(path, "rb"):
        pass  # a missing or unreadable file is the operating system's error (FileNotFoundError, ...)
    return read_archive(path, "load_model", "model file", lambda archive: _load(archive, path, compile, custom_objects))
