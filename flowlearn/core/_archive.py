"""flowlearn's file format family: a zip archive (entries stored, not compressed) of JSON and ``.npy`` arrays.

Model files, checkpoints and estimator files all use it; a checkpoint is also a plain ``.npz`` that
``numpy.load`` opens. Writing refuses anything but numeric arrays, so no file ever needs pickle to
be read. Reading checks each array before any memory is set aside for it: the ``.npy`` header must
declare a numeric dtype (no objects, hence no pickle) and a size equal to the bytes the entry holds,
and the entry is read to its end so that zipfile verifies its CRC-32. Every problem is a ValueError
that names the file, the entry and what is wrong.
"""
import json
import math
import zipfile

import numpy

__all__ = ["NUMERIC_KINDS", "check_numeric", "write_archive", "read_array", "read_header", "read_archive"]

# bool, signed and unsigned integers, floats: what weights, optimizer slots and steps are made of.
NUMERIC_KINDS = "biuf"


def check_numeric(array, what, who):
    """Raise a TypeError unless ``array`` is a numeric numpy array (an object array would need pickle)."""
    dtype = array.dtype
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
        raise TypeError(
            f"{who}: expected numeric arrays (bool, int or float) for {what}; received dtype {dtype}. "
            "Object and string arrays would need pickle to store; convert them to numbers (or keep them in "
            "the JSON metadata)."
        )


def write_archive(stream, texts, arrays):
    """Write a zip archive to the binary ``stream``: ``texts`` as (entry name, str) pairs, ``arrays`` as
    (entry name, numpy array) pairs in ``.npy`` format (the caller checks the arrays are numeric)."""
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, text in texts:
            archive.writestr(name, text)
        for name, array in arrays:
            with archive.open(name, "w", force_zip64=array.nbytes > 2**31 - 2**20) as entry:
                # asarray, not ascontiguousarray, which turns a 0-d array (a step counter) into shape (1,)
                numpy.lib.format.write_array(entry, numpy.asarray(array, order="C"), allow_pickle=False)


def read_array(archive, name, path, who):
    """The numeric array stored as entry ``name`` of the open zip ``archive`` (the file ``path``).

    ``who`` starts every error message (e.g. ``"load_model"``), so the user sees which call failed.
    """
    if not isinstance(name, str):
        raise ValueError(f"{who}: {path!r} is damaged: its config names an array entry {name!r}.")
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{who}: {path!r} is damaged: its config lists {name!r}, which the file lacks.") from None
    with archive.open(info) as entry:
        try:
            version = numpy.lib.format.read_magic(entry)
            read_header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                           else numpy.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(entry)
        except ValueError as error:
            raise ValueError(f"{who}: {path!r}: cannot read {name!r} as a numeric array ({error}).") from None
        if dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
            raise ValueError(
                f"{who}: {path!r}: cannot read {name!r} as a numeric array (it holds dtype {dtype}; "
                "expected numbers)."
            )
        # The declared size must be what the entry holds, before any memory is set aside for it.
        declared, present = math.prod(shape) * dtype.itemsize, info.file_size - entry.tell()
        if declared != present:
            raise ValueError(
                f"{who}: {path!r} is damaged: {name!r} declares {shape} {dtype} ({declared} bytes) but holds "
                f"{present} bytes."
            )
        # Reading to the entry's end makes zipfile check its CRC-32.
        data = entry.read(present + 1)
    array = numpy.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return array.reshape(shape, order="F" if fortran_order else "C").copy()


def read_header(archive, member, path, who, kind, format_name, max_version):
    """The JSON object ``member`` of a flowlearn archive, checked to be of ``format_name``, at most ``max_version``.

    Model files, checkpoints and estimator files share this first check, so each says in the same words what
    a file is not (``kind``: "model file", "checkpoint", ...) and which version a newer flowlearn wrote.
    """
    try:
        header = json.loads(archive.read(member))
    except KeyError:
        raise ValueError(f"{who}: {path!r} is not a flowlearn {kind}: it has no {member}.") from None
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise ValueError(f"{who}: {path!r} is not a flowlearn {kind} (format {format_name!r} expected).")
    version = header.get("format_version")
    if not isinstance(version, int) or version > max_version:
        raise ValueError(
            f"{who}: {path!r} has format version {version!r}; this flowlearn reads versions up to {max_version}. "
            "Upgrade flowlearn to load it."
        )
    return header


# Damage surfaces wherever it is read (a CRC check, a header of the wrong shape, weights that do not fit):
# each of these becomes the one ValueError that names the file.
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, TypeError, AttributeError, IndexError, EOFError,
           OverflowError, MemoryError, NotImplementedError, OSError, RuntimeError)


def read_archive(path, who, kind, read):
    """``read(archive)`` on the flowlearn archive at ``path``; every failure of a damaged file is one ValueError.

    ``who`` starts each message (``"load_model"``), ``kind`` says what the file should have been
    (``"model file"``). ValueErrors that already start with ``who`` pass through unchanged.
    """
    try:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise ValueError(f"{who}: {path!r} is not a flowlearn {kind} (not a zip archive: {error}).") from None
        with archive:  # opening can fail on damage too (an absurd version field: NotImplementedError)
            return read(archive)
    except ValueError as error:
        if str(error).startswith(f"{who}: "):
            raise
        problem = error
    except _DAMAGE as error:
        problem = error
    detail = f"{type(problem).__name__}: {problem}" if str(problem) else type(problem).__name__
    raise ValueError(f"{who}: {path!r} is damaged or not a valid flowlearn {kind} ({detail}).") from problem
