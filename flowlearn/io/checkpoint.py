"""Checkpoints in a ``model_dir``: every variable, optimizer slot, the global step and RNG state, never pickle.

Layout of a model_dir::

    checkpoint               the index (JSON): the latest checkpoint and every one kept, oldest first
    model.ckpt-100.npz       one file per saved step: a zip of ``<variable name>.npy`` arrays plus
    model.ckpt-200.npz       ``checkpoint.json`` (format, step, the variables' shapes and dtypes, and
                             the caller's metadata, e.g. RNG state, as JSON)

A checkpoint is a plain ``.npz``: ``numpy.load("model.ckpt-200.npz")["dense/kernel"]`` reads a variable
without flowlearn. npz rather than safetensors because it needs no extra dependency, is the format the
model files (``.flmodel``) already use, and stores JSON beside the arrays; its loader here applies the
same checks as safetensors' (declared sizes against the file, numeric dtypes only, CRC-32, no code).

Crash safety. Each file is written to ``.<name>.<pid>.<random>.tmp`` in model_dir, synced and renamed
into place; only then is the index rewritten the same way, the folder synced once for both renames,
and only after that are checkpoints beyond ``keep_checkpoint_max`` deleted. So killing the process at any instant leaves
the index pointing at a complete checkpoint. A half-written temporary is never read (its name is not a
checkpoint's) and is deleted by the next :func:`save_checkpoint` or :class:`CheckpointManager` once its
writer is dead. The index is the source of truth; when it is unreadable or names a missing file,
readers fall back to the newest complete ``model.ckpt-<step>.npz`` on disk and warn
(:class:`CheckpointIndexWarning`). Checkpoints are device-neutral: cupy arrays are stored as numpy
and load on machines without a GPU.

>>> path = save_checkpoint("run1", 100, {"dense/kernel": w, "global_step": numpy.int64(100)})  # doctest: +SKIP
>>> variables, metadata = load_checkpoint("run1")  # the latest checkpoint of model_dir "run1"  # doctest: +SKIP
"""
import json
import numbers
import os
import re
import warnings
import zipfile

import numpy

from ..core import backend
from ..core._archive import check_numeric, read_archive, read_array, read_header, write_archive
from ..core._atomic import atomic_write, remove_stale_temporaries
from ..core.tensor import Tensor

__all__ = [
    "CheckpointIndexWarning",
    "CheckpointManager",
    "all_checkpoints",
    "checkpoint_step",
    "filter_variables",
    "latest_checkpoint",
    "list_variables",
    "load_checkpoint",
    "restore_variables",
    "save_checkpoint",
]

FORMAT = "flowlearn.checkpoint"
FORMAT_VERSION = 1
INDEX_FORMAT = "flowlearn.checkpoint_index"
INDEX_NAME = "checkpoint"
HEADER_NAME = "checkpoint.json"  # no ".npy" suffix, so no variable's entry can take its name
_CHECKPOINT_FILE = re.compile(r"model\.ckpt-(\d+)\.npz\Z")
# What a writer leaves in model_dir while it works: temporaries of checkpoints and of the index.
_WRITTEN = re.compile(r"model\.ckpt-\d+\.npz|" + re.escape(INDEX_NAME))


class CheckpointIndexWarning(UserWarning):
    """The index file of a model_dir was unreadable or named a missing file; the files on disk were used."""


def checkpoint_step(path):
    """The global step in a checkpoint's file name (``model.ckpt-200.npz`` -> 200), or None for another name."""
    match = _CHECKPOINT_FILE.match(os.path.basename(os.fspath(path)))
    return None if match is None else int(match[1])


def _file_name(step):
    return f"model.ckpt-{step}.npz"


def _check_name(name):
    """A variable name usable as a zip entry: no absolute path, no ``..``, nothing an unzip could misplace."""
    parts = name.split("/") if isinstance(name, str) else None
    if (not parts or "\x00" in name or "\\" in name or any(part in ("", ".", "..") for part in parts)):
        raise ValueError(
            "save_checkpoint: expected variable names that are non-empty strings of '/'-separated parts (no empty, "
            f"'.' or '..' part, no backslash or NUL), such as 'dense/kernel'; received {name!r}."
        )


def _as_numpy(name, value):
    data = value.data if isinstance(value, Tensor) else value  # (numpy arrays' .data is a memoryview)
    if backend.array_module(data) is not numpy:
        data = backend.to_numpy(data)  # device-neutral: a cupy array is stored as numpy
    array = numpy.asarray(data)
    check_numeric(array, f"variable {name!r}", "save_checkpoint")
    return array


def _check_keep(keep_checkpoint_max):
    if keep_checkpoint_max is None:
        return 0
    if (isinstance(keep_checkpoint_max, bool) or not isinstance(keep_checkpoint_max, numbers.Integral)
            or keep_checkpoint_max < 0):
        raise ValueError(
            "Received an invalid value for `keep_checkpoint_max`, expected None or an integer >= 0 (None and 0 keep "
            f"every checkpoint). Received: keep_checkpoint_max={keep_checkpoint_max!r}"
        )
    return int(keep_checkpoint_max)


# -- the index ----------------------------------------------------------------------------------------
def _read_index(model_dir):
    """``(names, latest, problem)``: the index's checkpoints (oldest first) and latest, or a problem to report.

    ``names`` is None when there is no usable index; ``problem`` says why (None: no index file at all).
    Names are checked against the checkpoint file pattern, so an index cannot point outside model_dir.
    """
    path = os.path.join(model_dir, INDEX_NAME)
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except FileNotFoundError:
        return None, None, None
    except OSError as error:
        return None, None, f"the index {path!r} cannot be read ({error})"
    try:
        index = json.loads(content)
        names = index["all_model_checkpoint_paths"]
        latest = index["model_checkpoint_path"]
        if index.get("format") != INDEX_FORMAT or not isinstance(names, list):
            raise ValueError("not a flowlearn checkpoint index")
        if not all(isinstance(name, str) and _CHECKPOINT_FILE.match(name) for name in names + [latest]):
            raise ValueError("it names files that are not model.ckpt-<step>.npz")
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # json's errors are ValueErrors
        return None, None, f"the index {path!r} is damaged ({error})"
    return names, latest, None


def _complete(path):
    """Whether ``path`` reads as a finished checkpoint archive (its zip directory and header entry present)."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.getinfo(HEADER_NAME)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return False
    return True


def _scan(model_dir, known=()):
    """Names of the complete checkpoint files in model_dir, by step (temporaries never match the pattern).

    Names in ``known`` (listed by the index) are left out without opening them.
    """
    try:
        names = os.listdir(model_dir)
    except OSError:
        return []
    known = set(known)
    found = sorted((int(match[1]), name) for name in names
                   if name not in known and (match := _CHECKPOINT_FILE.match(name)))
    return [name for _, name in found if _complete(os.path.join(model_dir, name))]


def _fallback(model_dir, problem, stacklevel):
    """The checkpoints found on disk, with a warning saying why the index was not used."""
    names = _scan(model_dir)
    if problem is not None or names:
        found = f"using the complete checkpoint files found ({', '.join(names)})" if names else "and no checkpoint file"
        warnings.warn(
            f"model_dir {model_dir!r}: {problem or 'there is no checkpoint index but there are checkpoint files'}; "
            f"{found}.",
            CheckpointIndexWarning,
            stacklevel=stacklevel + 1,
        )
    return names


def _kept_names(model_dir, stacklevel=2):
    """The model_dir's checkpoints (file names, oldest first) and its latest: the index's, else the disk's."""
    names, latest, problem = _read_index(model_dir)
    if names is not None:
        present = [name for name in names if os.path.exists(os.path.join(model_dir, name))]
        if os.path.exists(os.path.join(model_dir, latest)):
            return present, latest
        problem = f"the index names {latest!r} as the latest checkpoint, which is missing"
    names = _fallback(model_dir, problem, stacklevel + 1)
    return names, (names[-1] if names else None)


def all_checkpoints(model_dir):
    """Paths of the checkpoints kept in ``model_dir``, oldest first (empty when there are none)."""
    model_dir = os.fspath(model_dir)
    names, _ = _kept_names(model_dir)
    return [os.path.join(model_dir, name) for name in names]


def latest_checkpoint(model_dir):
    """Path of the latest checkpoint in ``model_dir``, or None when it holds none (or does not exist).

    The index names it; when the index is damaged or names a missing file, the complete checkpoint
    file with the highest step is used instead, with a :class:`CheckpointIndexWarning`.
    """
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        return None
    _, latest = _kept_names(model_dir)
    return None if latest is None else os.path.join(model_dir, latest)


def _write_index(model_dir, names, latest):
    index = {
        "format": INDEX_FORMAT,
        "format_version": 1,
        "model_checkpoint_path": latest,
        "all_model_checkpoint_paths": names,
    }
    with atomic_write(os.path.join(model_dir, INDEX_NAME)) as stream:
        stream.write(json.dumps(index, indent=1).encode())


# -- writing ------------------------------------------------------------------------------------------
def save_checkpoint(model_dir, step, variables, *, keep_checkpoint_max=5, metadata=None):
    """Write ``variables`` as ``model_dir/model.ckpt-<step>.npz``, record it in the index and prune old ones.

    Parameters
    ----------
    model_dir : str or os.PathLike
        Created if missing.
    step : int
        The global step, >= 0; it names the file (saving the same step again replaces that file).
    variables : dict of str to array
        Everything to restore: weights, optimizer slots, the global step. Values are numpy or cupy arrays,
        flowlearn Tensors or numbers, all numeric (object and string arrays are refused: they would need
        pickle). Names are '/'-separated paths such as ``"dense/kernel"``.
    keep_checkpoint_max : int or None, default=5
        How many checkpoints to keep; the oldest saved are deleted beyond it. None or 0 keeps all.
    metadata : dict, optional
        JSON-serialisable data stored with the checkpoint (RNG state, configuration), returned by
        :func:`load_checkpoint`. A numpy Generator's ``bit_generator.state`` (PCG64) is JSON-serialisable.

    Returns
    -------
    str
        The path of the checkpoint written.
    """
    model_dir = os.fspath(model_dir)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"save_checkpoint: expected an integer `step` >= 0; received step={step!r}.")
    step = int(step)
    keep = _check_keep(keep_checkpoint_max)
    if not isinstance(variables, dict):
        raise TypeError(
            f"save_checkpoint: expected `variables` as a dict of name -> array; received {type(variables).__name__}."
        )
    arrays, described = [], []
    for name, value in variables.items():
        _check_name(name)
        array = _as_numpy(name, value)
        arrays.append((name + ".npy", array))
        described.append({"name": name, "entry": name + ".npy", "shape": list(array.shape), "dtype": array.dtype.str})
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, "variables": described,
              "metadata": {} if metadata is None else metadata}
    if not isinstance(header["metadata"], dict):
        raise TypeError(f"save_checkpoint: expected `metadata` as a dict; received {type(metadata).__name__}.")
    try:
        text = json.dumps(header, indent=1)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"save_checkpoint: expected JSON-serialisable `metadata` (dicts, lists, str, int, float, bool, None); "
            f"{error}. Convert arrays with .tolist()."
        ) from None

    os.makedirs(model_dir, exist_ok=True)
    remove_stale_temporaries(model_dir, _WRITTEN)
    name = _file_name(step)
    path = os.path.join(model_dir, name)
    # The file's content is synced before its rename; the folder is synced once, after the index's rename
    # below, which makes both renames durable (three fsyncs, not four). Crash safety does not need the
    # checkpoint's rename durable on its own first: a power cut before that one folder sync leaves
    # (a) neither rename: the old index and files; (b) only this file: a complete checkpoint the old
    # index does not list, kept as an orphan and listed by the next save; (c) only the index (a file
    # system that reorders renames in one folder): the index names a missing file, so readers use the
    # newest complete file on disk (the previous checkpoint, which no prune has touched: pruning comes
    # after the sync) with a CheckpointIndexWarning, and the next save rewrites the index. save_checkpoint
    # returns only after that sync, so the checkpoint is durable when it returns.
    with atomic_write(path, sync_rename=False) as stream:
        write_archive(stream, [(HEADER_NAME, text)], arrays)

    indexed, _, problem = _read_index(model_dir)
    if problem is not None:
        warnings.warn(f"model_dir {model_dir!r}: {problem}; it is rebuilt from the complete checkpoint files.",
                      CheckpointIndexWarning, stacklevel=2)
    indexed = [] if indexed is None else indexed
    # Complete files the index does not list (a crash between writing a file and the index, or between the
    # index and a deletion) count as older than everything listed: kept while there is room, pruned first.
    orphans = _scan(model_dir, known=indexed)
    names = [other for other in orphans + indexed
             if other != name and os.path.exists(os.path.join(model_dir, other))] + [name]
    pruned = names[:-keep] if keep else []
    names = names[len(pruned):]
    _write_index(model_dir, names, name)
    # Only now that the index no longer lists them may old checkpoints go. The deletions are not synced:
    # one undone by a power cut leaves a complete file the index does not list, which the next save
    # prunes first (see the orphans above), so a sync here would buy nothing but its milliseconds.
    for other in pruned:
        try:
            os.unlink(os.path.join(model_dir, other))
        except OSError:
            pass
    return path


class CheckpointManager:
    """Saves checkpoints to one ``model_dir`` with one pruning rule; creating it cleans up after crashes.

    Parameters
    ----------
    model_dir : str or os.PathLike
    keep_checkpoint_max : int or None, default=5
        Checkpoints kept (None or 0: all).

    >>> manager = CheckpointManager("run1", keep_checkpoint_max=3)  # doctest: +SKIP
    >>> manager.save(step, {"dense/kernel": w})  # doctest: +SKIP
    >>> variables, metadata = load_checkpoint(manager.latest_checkpoint)  # doctest: +SKIP
    """

    def __init__(self, model_dir, keep_checkpoint_max=5):
        self.model_dir = os.fspath(model_dir)
        self.keep_checkpoint_max = _check_keep(keep_checkpoint_max)
        os.makedirs(self.model_dir, exist_ok=True)
        # A previous run killed mid-write left temporaries: this start is the "next start" that removes them.
        remove_stale_temporaries(self.model_dir, _WRITTEN)

    def save(self, step, variables, metadata=None):
        """:func:`save_checkpoint` into this model_dir; returns the path written."""
        return save_checkpoint(self.model_dir, step, variables, keep_checkpoint_max=self.keep_checkpoint_max,
                               metadata=metadata)

    @property
    def latest_checkpoint(self):
        """Path of the latest checkpoint, or None."""
        return latest_checkpoint(self.model_dir)

    @property
    def checkpoints(self):
        """Paths of the kept checkpoints, oldest first."""
        return all_checkpoints(self.model_dir)


# -- reading ------------------------------------------------------------------------------------------
def _resolve(path, who):
    """The checkpoint file for ``path``: itself, ``path + '.npz'`` (TensorFlow's prefix form), or a model_dir's latest."""
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{who}: model_dir {path!r} holds no checkpoint.")
        return latest
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        return path + ".npz"
    with open(path, "rb"):
        pass  # a missing or unreadable file is the operating system's error (FileNotFoundError, ...)
    return path


def _read_header(archive, path, who):
    header = read_header(archive, HEADER_NAME, path, who, "checkpoint", FORMAT, FORMAT_VERSION)
    variables = header.get("variables")
    if not isinstance(variables, list) or not all(
            isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("shape"), list)
            for item in variables):
        raise ValueError(f"{who}: {path!r} is damaged: its {HEADER_NAME} lists no valid variables.")
    if not isinstance(header.get("metadata", {}), dict):
        raise ValueError(f"{who}: {path!r} is damaged: its metadata is not a JSON object.")
    return header


def load_checkpoint(path):
    """The variables and metadata of a checkpoint.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint file, or a model_dir (its latest checkpoint is read).

    Returns
    -------
    variables : dict of str to numpy.ndarray
    metadata : dict
        What was passed as ``metadata`` to :func:`save_checkpoint`.

    Raises
    ------
    ValueError
        The file is damaged or not a checkpoint; the message names the file and the problem.
    FileNotFoundError
        No such file, or a model_dir without checkpoints.
    """
    who = "load_checkpoint"
    path = _resolve(path, who)

    def read(archive):
        header = _read_header(archive, path, who)
        variables = {}
        for item in header["variables"]:
            array = read_array(archive, item.get("entry"), path, who)
            if list(array.shape) != item["shape"] or array.dtype.str != item.get("dtype"):
                raise ValueError(
                    f"{who}: {path!r} is damaged: variable {item['name']!r} is listed as {tuple(item['shape'])} "
                    f"{item.get('dtype')} but stored as {array.shape} {array.dtype.str}."
                )
            variables[item["name"]] = array
        return variables, header.get("metadata", {})

    return read_archive(path, who, "checkpoint", read)


def list_variables(path):
    """``(name, shape)`` of every variable in a checkpoint (or a model_dir's latest), sorted by name.

    Only the checkpoint's header is read, not its arrays.
    """
    who = "list_variables"
    path = _resolve(path, who)

    def read(archive):
        header = _read_header(archive, path, who)
        return sorted((item["name"], tuple(item["shape"])) for item in header["variables"])

    return read_archive(path, who, "checkpoint", read)


# -- restoring into a model ---------------------------------------------------------------------------
def filter_variables(variables, regex):
    """The entries of ``variables`` whose name matches ``regex`` at its start (``re.match``, as TF's warm start).

    ``regex`` is a pattern, a list of patterns (a name matching any is kept) or None (everything).

    >>> filter_variables({"dense/kernel": 1, "dense_1/kernel": 2}, "dense/")
    {'dense/kernel': 1}
    """
    if regex is None:
        return dict(variables)
    patterns = [regex] if isinstance(regex, (str, re.Pattern)) else list(regex)
    compiled = [re.compile(pattern) for pattern in patterns]
    return {name: value for name, value in variables.items() if any(p.match(name) for p in compiled)}


def restore_variables(variables, targets, path):
    """Copy the checkpoint's ``variables`` into ``targets`` (name -> Tensor or numpy array), in place.

    Nothing is written unless the two match exactly; otherwise one ValueError names the checkpoint
    ``path`` and every missing (in targets, not in the checkpoint), unexpected (in the checkpoint, not
    in targets) and mis-shaped variable. Values are cast to each target's dtype and device.
    """
    missing = sorted(set(targets) - set(variables))
    unexpected = sorted(set(variables) - set(targets))
    misshaped = [
        f"{name!r} (checkpoint {tuple(numpy.shape(variables[name]))}, model {tuple(targets[name].shape)})"
        for name in sorted(set(targets) & set(variables))
        if tuple(numpy.shape(variables[name])) != tuple(targets[name].shape)
    ]
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing from the checkpoint: {missing}")
        if unexpected:
            problems.append(f"in the checkpoint but not in the model: {unexpected}")
        if misshaped:
            problems.append(f"of a different shape: {', '.join(misshaped)}")
        raise ValueError(
            f"restore: the checkpoint {os.fspath(path)!r} does not match the model's variables; "
            + "; ".join(problems) + "."
        )
    for name, target in targets.items():
        if hasattr(target, "assign"):
            target.assign(variables[name])
        else:
            target[...] = variables[name]
