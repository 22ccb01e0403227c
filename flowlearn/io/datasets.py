"""Datasets for examples and tests: the bundled MNIST subset, or full MNIST read from IDX files.

The bundled file ``flowlearn/io/data/mnist10k.npz`` holds 10,000 real MNIST digits; its origin and
licence are in ``flowlearn/io/data/README.md`` beside it. No download ever happens here.
"""
import gzip
import importlib.resources
import os

import numpy

__all__ = ["load_mnist", "read_idx"]

_BUNDLED_TRAIN_ROWS = 8000

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: numpy.dtype("u1"),
    0x09: numpy.dtype("i1"),
    0x0B: numpy.dtype(">i2"),
    0x0C: numpy.dtype(">i4"),
    0x0D: numpy.dtype(">f4"),
    0x0E: numpy.dtype(">f8"),
}

_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path):
    """Read an IDX file (the format of the MNIST distribution), plain or gzip-compressed.

    Returns a numpy array in native byte order with the shape the header declares.

    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    # The gzip magic (1f 8b) can never start an IDX file, whose first two bytes are zero.
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"read_idx: {path!r} is not an IDX file: expected a magic number 00 00 <type> <ndim> with type in "
            f"{sorted(hex(code) for code in _IDX_DTYPES)}; got bytes {raw[:4].hex(' ') or '(empty file)'}."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path!r} is truncated: its header declares {ndim} dimensions but the file ends early.")
    shape = tuple(int(n) for n in numpy.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"read_idx: {path!r} holds {len(raw) - header} data bytes; its header (shape {shape}, dtype "
            f"{dtype.name}) expects {expected}."
        )
    data = numpy.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native order, and a writable copy


def _find_idx(directory, stem):
    """The path of ``stem`` in ``directory`` under the names MNIST mirrors use, or None."""
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte as some mirrors name it
    for folder in (directory, os.path.join(directory, "MNIST", "raw")):
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def _load_idx_directory(directory):
    paths = {key: _find_idx(directory, stem) for key, stem in _MNIST_FILES.items()}
    missing = [_MNIST_FILES[key] for key, found in paths.items() if found is None]
    if missing:
        raise FileNotFoundError(
            f"load_mnist: {directory!r} lacks the MNIST IDX files {missing} (plain or .gz). Expected the four "
            f"files {list(_MNIST_FILES.values())}, or call load_mnist() without a path for the bundled subset."
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"load_mnist: expected {split} images of shape (N, rows, cols) and N labels; got images "
                f"{images.shape} and labels {labels.shape}."
            )
    return arrays


def _load_bundled():
    resource = importlib.resources.files("flowlearn.io").joinpath("data", "mnist10k.npz")
    with resource.open("rb") as handle, numpy.load(handle, allow_pickle=False) as archive:
        images, labels = archive["X"], archive["y"]
    images = images.reshape(-1, 28, 28)
    # The bundled rows are already shuffled; its README names the first 8,000 as the training split.
    cut = _BUNDLED_TRAIN_ROWS
    return {"x_train": images[:cut], "y_train": labels[:cut], "x_test": images[cut:], "y_test": labels[cut:]}


def load_mnist(path=None):
    """MNIST digits as ``(x_train, y_train), (x_test, y_test)``.

    Images are uint8 arrays of shape ``(N, 28, 28, 1)`` (NHWC, pixels 0..255); labels are int64 in 0..9.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A directory holding the four standard MNIST IDX files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, plain or
        ``.gz``; also looked for under ``MNIST/raw`` as torchvision caches them): full MNIST,
        60,000 / 10,000. Without it, the bundled subset of 10,000 real MNIST digits is returned,
        split 8,000 / 2,000 (always the same rows). Nothing is downloaded.

    Examples
    --------
    >>> from flowlearn.io.datasets import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_test.shape, y_train.dtype
    ((8000, 28, 28, 1), (2000, 28, 28, 1), dtype('int64'))
    """
    if path is None:
        arrays = _load_bundled()
    else:
        directory = os.fspath(path)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"load_mnist: expected `path` to be a directory holding the MNIST IDX files; got {directory!r}."
            )
        arrays = _load_idx_directory(directory)
    x_train, x_test = (arrays[k].astype(numpy.uint8, copy=False)[..., None] for k in ("x_train", "x_test"))
    y_train, y_test = (arrays[k].astype(numpy.int64) for k in ("y_train", "y_test"))
    return (x_train, y_train), (x_test, y_test)
