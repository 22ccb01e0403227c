"""The files an input_fn reads: one file, a glob pattern or a list of both, checked before any is opened.

``csv_input_fn`` and ``tfrecord_input_fn`` take their files this way; the caller's name and argument name are put
in the messages, so a user sees the function they called.
"""
import glob
import os

__all__ = ["pass_order", "resolve_files"]


def pass_order(files, shuffle, rng):
    """The files of one pass: a new list, in order, or permuted by the generator ``rng`` when ``shuffle``."""
    if not shuffle:
        return list(files)
    return [files[i] for i in rng.permutation(len(files))]


def resolve_files(owner, argument, files):
    """The paths named by ``files``, in order, each pattern's matches sorted by name.

    Parameters
    ----------
    owner : str
        The public function, named at the start of every message.
    argument : str
        The caller's name for ``files``, named in the messages.
    files : str, path or list of them
        Files and glob patterns.

    Raises
    ------
    ValueError
        ``files`` is an empty list, or a pattern matches no file (a folder matched by a pattern is not a file).
    FileNotFoundError
        A name without glob characters is not an existing file.
    """
    entries = files if isinstance(files, (list, tuple)) else [files]
    if not entries:
        raise ValueError(f"{owner}: `{argument}` is an empty list; expected files or glob patterns.")
    resolved = []
    for entry in entries:
        entry = os.fspath(entry)
        if glob.has_magic(entry):
            matches = sorted(path for path in glob.glob(entry) if os.path.isfile(path))
            if not matches:
                raise ValueError(f"{owner}: the pattern {entry!r} in `{argument}` matches no file.")
            resolved.extend(matches)
        elif not os.path.isfile(entry):
            raise FileNotFoundError(f"{owner}: no such file: {entry!r}")
        else:
            resolved.append(entry)
    return resolved
