"""The shared file listing of csv_input_fn and tfrecord_input_fn (flowlearn.io._files)."""
import pytest

import numpy

from flowlearn.io import FixedLenFeature, csv_input_fn, tfrecord_input_fn
from flowlearn.io._files import pass_order, resolve_files
from flowlearn.io.inputs import _passes


def test_files_patterns_and_lists_in_order_with_matches_sorted(tmp_path):
    for name in ("b-2.txt", "b-1.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "b-dir").mkdir()  # matched by the pattern, but not a file
    got = resolve_files("f", "files", [tmp_path / "a.txt", str(tmp_path / "b-*")])
    assert got == [str(tmp_path / name) for name in ("a.txt", "b-1.txt", "b-2.txt")]
    assert resolve_files("f", "files", str(tmp_path / "a.txt")) == [str(tmp_path / "a.txt")]


@pytest.mark.parametrize("call, owner, argument", [
    (lambda files: csv_input_fn(files), "csv_input_fn", "file_pattern"),
    (lambda files: tfrecord_input_fn(files, {"x": FixedLenFeature([], "float32")}), "tfrecord_input_fn", "files"),
])
def test_both_input_fns_name_themselves_and_their_argument(tmp_path, call, owner, argument):
    with pytest.raises(ValueError, match=rf"^{owner}: `{argument}` is an empty list; expected files or glob"):
        call([])
    with pytest.raises(ValueError, match=rf"^{owner}: the pattern '.*none-\*' in `{argument}` matches no file\.$"):
        call(str(tmp_path / "none-*"))
    with pytest.raises(FileNotFoundError, match=rf"^{owner}: no such file: '.*missing'$"):
        call(tmp_path / "missing")


def test_pass_order_copies_in_order_or_permutes_with_the_generator():
    files = ["a", "b", "c", "d", "e"]
    in_order = pass_order(files, False, numpy.random.default_rng(0))
    assert in_order == files and in_order is not files
    shuffled = pass_order(files, True, numpy.random.default_rng(3))
    assert shuffled == [files[i] for i in numpy.random.default_rng(3).permutation(5)]
    assert sorted(shuffled) == files and files == ["a", "b", "c", "d", "e"]


def test_passes_counts_num_epochs_or_runs_without_end():
    assert len(list(_passes(3))) == 3 and list(_passes(0)) == []
    endless = iter(_passes(None))
    assert len([next(endless) for _ in range(1000)]) == 1000
