import gzip
import importlib.resources
import struct

import numpy
import pytest

from flowlearn.io import datasets
from flowlearn.io.datasets import load_mnist, read_idx


def _write_idx(path, array, code=0x08, compress=False):
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big_endian.tobytes()
    with (gzip.open if compress else open)(path, "wb") as handle:
        handle.write(raw)


def _write_mnist(directory, rng, n_train=6, n_test=4, compress=False):
    suffix = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=numpy.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=numpy.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=numpy.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=numpy.uint8),
    }
    for name, array in arrays.items():
        _write_idx(directory / (name + suffix), array, compress=compress)
    return arrays


def test_bundled_data_is_package_data_with_its_readme():
    folder = importlib.resources.files("flowlearn.io").joinpath("data")
    assert folder.joinpath("mnist10k.npz").is_file()
    assert "LeCun" in folder.joinpath("README.md").read_text()


def test_bundled_mnist_split_shapes_and_dtypes():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    assert x_train.dtype == numpy.uint8 and x_test.dtype == numpy.uint8
    assert y_train.shape == (8000,) and y_test.shape == (2000,)
    assert y_train.dtype == numpy.int64 and y_test.dtype == numpy.int64
    assert set(numpy.unique(y_train)) == set(range(10)) and set(numpy.unique(y_test)) == set(range(10))
    assert x_train.max() == 255 and x_train.min() == 0


def test_bundled_split_is_first_8000_rows_and_deterministic():
    with importlib.resources.files("flowlearn.io").joinpath("data", "mnist10k.npz").open("rb") as handle:
        archive = numpy.load(handle, allow_pickle=False)
        raw_x, raw_y = archive["X"], archive["y"]
    (x_train, y_train), (x_test, y_test) = load_mnist()
    numpy.testing.assert_array_equal(x_train.reshape(8000, 784), raw_x[:8000])
    numpy.testing.assert_array_equal(y_test, raw_y[8000:])
    (x_again, _), _ = load_mnist()
    numpy.testing.assert_array_equal(x_again, x_train)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_idx_directory(tmp_path, rng, compress):
    arrays = _write_mnist(tmp_path, rng, compress=compress)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path)
    assert x_train.shape == (6, 28, 28, 1) and x_test.shape == (4, 28, 28, 1)
    assert x_train.dtype == numpy.uint8 and y_train.dtype == numpy.int64
    numpy.testing.assert_array_equal(x_train[..., 0], arrays["train-images-idx3-ubyte"])
    numpy.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


def test_load_mnist_finds_torchvision_cache_layout(tmp_path, rng):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = _write_mnist(raw, rng, compress=True)
    (_, y_train), _ = load_mnist(str(tmp_path))
    numpy.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])


@pytest.mark.parametrize("code, dtype", [(0x08, "u1"), (0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"), (0x0E, "f8")])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_every_type_code(tmp_path, rng, code, dtype, compress):
    array = (rng.standard_normal((3, 2, 5)) * 50).astype(dtype)
    path = tmp_path / "a.idx"
    _write_idx(path, array, code=code, compress=compress)
    result = read_idx(path)
    assert result.dtype == numpy.dtype(dtype) and result.dtype.isnative
    numpy.testing.assert_array_equal(result, array)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file.*magic number"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc")  # unknown type code
    with pytest.raises(ValueError, match="magic number"):
        read_idx(path)


def test_read_idx_rejects_bad_magic_inside_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\xff\xff\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic number"):
        read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path, rng):
    path = tmp_path / "short"
    _write_idx(path, rng.integers(0, 9, (4, 3), dtype=numpy.uint8))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"holds 10 data bytes.*expects 12"):
        read_idx(path)


def test_load_mnist_missing_files_names_them(tmp_path, rng):
    _write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_non_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected `path` to be a directory"):
        load_mnist(tmp_path / "nowhere")


def test_load_mnist_rejects_mismatched_label_count(tmp_path, rng):
    _write_mnist(tmp_path, rng)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", numpy.zeros(5, numpy.uint8))
    with pytest.raises(ValueError, match=r"train images of shape.*\(6, 28, 28\).*\(5,\)"):
        load_mnist(tmp_path)


def test_io_package_exports_datasets():
    import flowlearn.io

    assert flowlearn.io.datasets is datasets
