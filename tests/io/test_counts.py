"""The one count check (flowlearn.io.inputs._count) behind image_input_fn, tfrecord_input_fn and dask_input_fn."""
import pytest

from flowlearn.io import FixedLenFeature, tfrecord_input_fn, write_tfrecord
from flowlearn.io.inputs import _count


def test_counts_minimum_and_none():
    assert _count("f", "n", 3) == 3 and type(_count("f", "n", 3)) is int
    assert _count("f", "n", 0, minimum=0) == 0
    assert _count("f", "n", None, allow_none=True) is None
    for value, message in [(0, "a positive integer"), (True, "a positive integer"), (2.0, "a positive integer")]:
        with pytest.raises(ValueError, match=rf"^f: received an invalid value for `n`, expected {message}\. "
                                             rf"Received: n={value!r}$"):
            _count("f", "n", value)
    with pytest.raises(ValueError, match=r"expected a non-negative integer\. Received: n=-1$"):
        _count("f", "n", -1, minimum=0)
    with pytest.raises(ValueError, match=r"expected a positive integer or None\. Received: n=0$"):
        _count("f", "n", 0, allow_none=True)


def test_the_input_fns_name_themselves_and_the_argument(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from flowlearn.io import image_input_fn

    (tmp_path / "images" / "a").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a" / "0.png")
    path = tmp_path / "r.tfrecord"
    write_tfrecord(path, [{"x": [1.0]}])
    with pytest.raises(ValueError, match=r"^image_input_fn: received an invalid value for `num_parallel_calls`, "
                                         r"expected a positive integer\. Received: num_parallel_calls=0$"):
        image_input_fn(tmp_path / "images", num_parallel_calls=0)
    with pytest.raises(ValueError, match=r"^tfrecord_input_fn: received an invalid value for `num_parallel_calls`, "
                                         r"expected a positive integer or None\. Received: num_parallel_calls=0$"):
        tfrecord_input_fn(path, {"x": FixedLenFeature([1], "float32")}, num_parallel_calls=0)
