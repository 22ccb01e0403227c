"""model_dir checkpoints: round trip, index, pruning, crash safety, damaged files, restore errors."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy
import pytest

import flowlearn as fl
from flowlearn.io import checkpoint
from flowlearn.io.checkpoint import (
    CheckpointIndexWarning,
    CheckpointManager,
    all_checkpoints,
    filter_variables,
    latest_checkpoint,
    list_variables,
    load_checkpoint,
    restore_variables,
    save_checkpoint,
)


def _variables(step, rng=None):
    rng = numpy.random.default_rng(step) if rng is None else rng
    return {
        "dense/kernel": rng.standard_normal((4, 3)).astype(numpy.float32),
        "dense/bias": rng.standard_normal(3),  # float64
        "dense/kernel/adam_m": rng.standard_normal((4, 3)).astype(numpy.float32),
        "global_step": numpy.int64(step),
        "mask": numpy.array([True, False]),
        "counts": numpy.arange(5, dtype=numpy.uint8),
    }


def _names(model_dir):
    return [os.path.basename(path) for path in all_checkpoints(model_dir)]


def _dead_pid():
    """The pid of a process that has finished (not reused this quickly in practice)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- round trip and the index -------------------------------------------------------------------------------
def test_round_trip_keeps_values_dtypes_shapes_and_metadata(tmp_path):
    variables = _variables(7)
    generator = numpy.random.default_rng(3)
    generator.standard_normal(10)
    metadata = {"rng": generator.bit_generator.state, "note": "after epoch 1", "lr": 0.001}
    path = save_checkpoint(tmp_path, 7, variables, metadata=metadata)
    assert os.path.basename(path) == "model.ckpt-7.npz"
    loaded, meta = load_checkpoint(path)
    assert loaded.keys() == variables.keys()
    for name, value in variables.items():
        value = numpy.asarray(value)
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        numpy.testing.assert_array_equal(loaded[name], value)
    assert meta["note"] == "after epoch 1" and meta["lr"] == 0.001
    # The RNG state goes through JSON exactly: the restored generator continues the same stream.
    restored = numpy.random.default_rng()
    restored.bit_generator.state = meta["rng"]
    numpy.testing.assert_array_equal(restored.standard_normal(5), generator.standard_normal(5))
    assert list_variables(path) == sorted((name, numpy.shape(value)) for name, value in variables.items())


def test_views_numpy_scalars_and_python_numbers_are_stored_as_arrays(tmp_path):
    base = numpy.arange(12, dtype=numpy.float16).reshape(3, 4)
    saved = {"transposed": base.T, "strided": base[:, ::2], "half": numpy.float16(2.5), "count": 3, "rate": 1.5,
             "flag": True}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path, 1, saved))
    for name, value in saved.items():
        expected = numpy.asarray(value)
        assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape, name
        numpy.testing.assert_array_equal(loaded[name], expected)


def test_file_is_a_plain_npz_that_numpy_reads_without_pickle(tmp_path):
    variables = _variables(1)
    path = save_checkpoint(tmp_path, 1, variables)
    with numpy.load(path, allow_pickle=False) as archive:
        numpy.testing.assert_array_equal(archive["dense/kernel"], variables["dense/kernel"])
        header = json.loads(archive["checkpoint.json"])
    assert header["format"] == "flowlearn.checkpoint" and header["step"] == 1
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def test_tensors_are_stored_as_numpy_on_any_device(tmp_path, device):
    weight = fl.tensor(numpy.arange(6, dtype=numpy.float32).reshape(2, 3), device=device, requires_grad=True)
    path = save_checkpoint(tmp_path, 0, {"w": weight})
    loaded, _ = load_checkpoint(path)
    assert type(loaded["w"]) is numpy.ndarray  # device-neutral: loads where there is no cupy
    numpy.testing.assert_array_equal(loaded["w"], weight.numpy())


def test_index_names_latest_and_kept_oldest_first(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, _variables(step), keep_checkpoint_max=None)
    index = json.loads((tmp_path / "checkpoint").read_text())
    assert index["model_checkpoint_path"] == "model.ckpt-30.npz"
    assert index["all_model_checkpoint_paths"] == ["model.ckpt-10.npz", "model.ckpt-20.npz", "model.ckpt-30.npz"]
    assert latest_checkpoint(tmp_path) == os.path.join(tmp_path, "model.ckpt-30.npz")
    assert checkpoint.checkpoint_step(latest_checkpoint(tmp_path)) == 30
    # A model_dir, or TensorFlow's prefix without the extension, is accepted where a file is.
    assert load_checkpoint(tmp_path)[0]["global_step"] == 30
    assert load_checkpoint(tmp_path / "model.ckpt-20")[0]["global_step"] == 20


def test_latest_is_the_last_saved_and_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 5, _variables(5))
    save_checkpoint(tmp_path, 6, _variables(6))
    save_checkpoint(tmp_path, 5, {"global_step": numpy.int64(55)})
    assert _names(tmp_path) == ["model.ckpt-6.npz", "model.ckpt-5.npz"]
    assert load_checkpoint(tmp_path)[0] == {"global_step": 55}


def test_empty_or_missing_model_dir(tmp_path):
    assert latest_checkpoint(tmp_path / "nowhere") is None
    assert latest_checkpoint(tmp_path) is None
    assert all_checkpoints(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "model.ckpt-1.npz")


# -- pruning -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep, expected", [(2, [40, 50]), (1, [50]), (None, [10, 20, 30, 40, 50]),
                                            (0, [10, 20, 30, 40, 50])])
def test_keep_checkpoint_max_prunes_the_oldest(tmp_path, keep, expected):
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, step, _variables(step), keep_checkpoint_max=keep)
    files = sorted(name for name in os.listdir(tmp_path) if name.startswith("model.ckpt-"))
    assert files == sorted(f"model.ckpt-{step}.npz" for step in expected)
    assert _names(tmp_path) == [f"model.ckpt-{step}.npz" for step in expected]


def test_manager_saves_with_its_rule(tmp_path):
    manager = CheckpointManager(tmp_path / "run", keep_checkpoint_max=2)
    for step in range(4):
        manager.save(step, {"global_step": numpy.int64(step)}, metadata={"step": step})
    assert [checkpoint.checkpoint_step(path) for path in manager.checkpoints] == [2, 3]
    assert load_checkpoint(manager.latest_checkpoint) == ({"global_step": 3}, {"step": 3})


@pytest.mark.parametrize("keep", [-1, 1.5, True, "3"])
def test_invalid_keep_checkpoint_max_is_refused(tmp_path, keep):
    with pytest.raises(ValueError, match=f"keep_checkpoint_max.*Received: keep_checkpoint_max={keep!r}"):
        save_checkpoint(tmp_path, 1, {}, keep_checkpoint_max=keep)


# -- the index is the source of truth; damage falls back to the files with a warning ---------------------
@pytest.mark.parametrize("content", [b"{not json", b'{"format": "other"}', b"[]",
                                     b'{"format": "flowlearn.checkpoint_index", "model_checkpoint_path": '
                                     b'"../../etc/passwd", "all_model_checkpoint_paths": []}'])
def test_damaged_index_falls_back_to_the_newest_complete_file(tmp_path, content):
    for step in (100, 300, 200):
        save_checkpoint(tmp_path, step, _variables(step))
    (tmp_path / "checkpoint").write_bytes(content)
    (tmp_path / "model.ckpt-400.npz").write_bytes(b"PK\x03\x04 half a file")  # not a complete checkpoint
    with pytest.warns(CheckpointIndexWarning, match="index .* is damaged"):
        latest = latest_checkpoint(tmp_path)
    assert latest == os.path.join(tmp_path, "model.ckpt-300.npz")
    with pytest.warns(CheckpointIndexWarning):
        assert load_checkpoint(tmp_path)[0]["global_step"] == 300


def test_index_naming_a_missing_file_falls_back_with_a_warning(tmp_path):
    save_checkpoint(tmp_path, 1, _variables(1))
    save_checkpoint(tmp_path, 2, _variables(2))
    os.unlink(tmp_path / "model.ckpt-2.npz")
    with pytest.warns(CheckpointIndexWarning, match="'model.ckpt-2.npz' as the latest checkpoint, which is missing"):
        assert latest_checkpoint(tmp_path) == os.path.join(tmp_path, "model.ckpt-1.npz")


def test_files_without_an_index_are_found_with_a_warning(tmp_path):
    save_checkpoint(tmp_path, 3, _variables(3))
    os.unlink(tmp_path / "checkpoint")
    with pytest.warns(CheckpointIndexWarning, match="no checkpoint index"):
        assert latest_checkpoint(tmp_path) == os.path.join(tmp_path, "model.ckpt-3.npz")


def test_a_save_after_index_damage_rebuilds_the_index(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _variables(step))
    (tmp_path / "checkpoint").write_text("garbage")
    with pytest.warns(CheckpointIndexWarning, match="rebuilt"):
        save_checkpoint(tmp_path, 4, _variables(4), keep_checkpoint_max=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _names(tmp_path) == ["model.ckpt-2.npz", "model.ckpt-3.npz", "model.ckpt-4.npz"]


def test_crash_between_file_and_index_keeps_the_previous_latest(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, _variables(1))

    def killed(*args):
        raise KeyboardInterrupt  # stands for the process dying after the rename, before the index

    monkeypatch.setattr(checkpoint, "_write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, _variables(2))
    monkeypatch.undo()
    assert (tmp_path / "model.ckpt-2.npz").exists()
    assert latest_checkpoint(tmp_path) == os.path.join(tmp_path, "model.ckpt-1.npz")  # the index decides
    # The next save lists the complete file the index missed, as the oldest: pruned first.
    save_checkpoint(tmp_path, 3, _variables(3), keep_checkpoint_max=2)
    assert _names(tmp_path) == ["model.ckpt-1.npz", "model.ckpt-3.npz"]
    assert not (tmp_path / "model.ckpt-2.npz").exists()


def test_crash_before_pruning_leaves_old_files_that_the_next_save_prunes(tmp_path, monkeypatch):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _variables(step), keep_checkpoint_max=2)
    real_unlink = os.unlink

    def killed(path, *args, **kwargs):
        if "model.ckpt-" in os.fspath(path):
            raise KeyboardInterrupt  # dies after the index, before deleting the pruned file
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 3, _variables(3), keep_checkpoint_max=2)
    monkeypatch.undo()
    assert (tmp_path / "model.ckpt-1.npz").exists() and _names(tmp_path) == ["model.ckpt-2.npz", "model.ckpt-3.npz"]
    save_checkpoint(tmp_path, 4, _variables(4), keep_checkpoint_max=2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-3.npz", "model.ckpt-4.npz"]


def _record_durability(monkeypatch):
    """Log os.fsync (of a file or a folder), os.replace and os.unlink calls as (what, base name) events."""
    import stat

    events = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

    def fsync(descriptor):
        kind = "fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file"
        events.append((kind, None))
        return real_fsync(descriptor)

    def replace(source, target, *args, **kwargs):
        events.append(("replace", os.path.basename(os.fspath(target))))
        return real_replace(source, target, *args, **kwargs)

    def unlink(path, *args, **kwargs):
        events.append(("unlink", os.path.basename(os.fspath(path))))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    return events


def test_a_save_syncs_each_file_before_its_rename_and_the_folder_once_after_both(tmp_path, monkeypatch):
    """Three fsyncs per save, pruning included: the checkpoint's content, the index's content, then one
    folder sync that makes both renames durable before save_checkpoint returns; deletions come after it."""
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _variables(step), keep_checkpoint_max=2)
    events = _record_durability(monkeypatch)
    save_checkpoint(tmp_path, 3, _variables(3), keep_checkpoint_max=2)  # prunes model.ckpt-1.npz
    monkeypatch.undo()
    assert events == [
        ("fsync file", None), ("replace", "model.ckpt-3.npz"),
        ("fsync file", None), ("replace", "checkpoint"),
        ("fsync folder", None),
        ("unlink", "model.ckpt-1.npz"),
    ]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.ckpt-2.npz", "model.ckpt-3.npz"]


def test_a_power_cut_that_kept_only_the_index_rename_loads_the_previous_checkpoint(tmp_path):
    """The one state the shared folder sync adds (a file system that reorders the two renames): the index
    names the new file, which never reached the disk, and the previous checkpoint is on disk unpruned.
    Readers use that one with a warning, and the next save rewrites the index without warning again."""
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _variables(step), keep_checkpoint_max=2)
    index = (tmp_path / "checkpoint").read_bytes()
    save_checkpoint(tmp_path, 3, _variables(3), keep_checkpoint_max=2)
    new_index = (tmp_path / "checkpoint").read_bytes()
    # Rebuild what the disk could hold: the new index, the new file's rename undone, no deletion done.
    os.unlink(tmp_path / "model.ckpt-3.npz")
    save_checkpoint(tmp_path / "again", 1, _variables(1))
    os.replace(tmp_path / "again" / "model.ckpt-1.npz", tmp_path / "model.ckpt-1.npz")
    (tmp_path / "checkpoint").write_bytes(new_index)
    assert new_index != index
    with pytest.warns(CheckpointIndexWarning, match="'model.ckpt-3.npz' as the latest checkpoint, which is missing"):
        latest = latest_checkpoint(tmp_path)
    assert latest == os.path.join(tmp_path, "model.ckpt-2.npz")
    assert int(load_checkpoint(latest)[0]["global_step"]) == 2
    save_checkpoint(tmp_path, 4, _variables(4), keep_checkpoint_max=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _names(tmp_path) == ["model.ckpt-2.npz", "model.ckpt-4.npz"]
    assert sorted(os.listdir(tmp_path)) == ["again", "checkpoint", "model.ckpt-2.npz", "model.ckpt-4.npz"]


# -- half-written files ----------------------------------------------------------------------------------------
def test_half_written_temporary_is_ignored_and_cleaned_on_the_next_start(tmp_path):
    save_checkpoint(tmp_path, 1, _variables(1))
    dead = _dead_pid()
    half = tmp_path / f".model.ckpt-2.npz.{dead}.x1y2z3.tmp"
    half.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    half_index = tmp_path / f".checkpoint.{dead}.abcd.tmp"
    half_index.write_bytes(b'{"format": "flowlearn.chec')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing about them is worth a warning: they are not checkpoints
        assert latest_checkpoint(tmp_path) == os.path.join(tmp_path, "model.ckpt-1.npz")
        assert _names(tmp_path) == ["model.ckpt-1.npz"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".model.ckpt-3.npz.{sleeper.pid}.abc.tmp"  # a live writer's file in progress
        live.write_bytes(b"PK")
        other = tmp_path / f".events.out.{dead}.abc.tmp"  # another tool's temporary: not ours to judge
        other.write_bytes(b"x")
        CheckpointManager(tmp_path)
        assert not half.exists() and not half_index.exists()
        assert live.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


_WRITER = textwrap.dedent("""
    import sys, numpy
    from flowlearn.io.checkpoint import CheckpointManager, load_checkpoint
    import warnings
    warnings.simplefilter("ignore")
    manager = CheckpointManager(sys.argv[1], keep_checkpoint_max=3)
    latest = manager.latest_checkpoint
    step = 0 if latest is None else int(load_checkpoint(latest)[0]["global_step"]) + 1
    while True:
        print(step, flush=True)  # about to write this step: the parent kills somewhere inside the write
        value = numpy.float32(step)
        manager.save(step, {"w": numpy.full((1024, 1024), value), "b": numpy.full(1000, value),
                            "global_step": numpy.int64(step)}, metadata={"step": step})
        step += 1
""")


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_the_latest_complete_checkpoint(tmp_path):
    """Kill a writer (SIGKILL: no clean-up of any kind) at random points of its saves, eight times over.

    After every kill the model_dir loads, its latest checkpoint is complete and consistent (every array
    holds its own step), and the next writer resumes from it and cleans up the dead writer's temporaries.
    """
    model_dir = tmp_path / "model_dir"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    chooser = random.Random(1234)
    previous, temporaries_seen = -1, 0
    for _ in range(8):
        writer = subprocess.Popen([sys.executable, str(script), str(model_dir)], stdout=subprocess.PIPE, text=True)
        try:
            started = int(writer.stdout.readline())
            assert started == previous + 1  # resumed from the latest complete checkpoint left by the last kill
            for _ in range(chooser.randrange(0, 3)):  # let a few saves complete (and prune)
                writer.stdout.readline()
            time.sleep(chooser.uniform(0.0, 0.03))  # a save of these 4 MB takes ~10-50 ms: kill inside it
            os.kill(writer.pid, signal.SIGKILL)
        finally:
            writer.wait()
            writer.stdout.close()
        temporaries_seen += any(name.endswith(".tmp") for name in os.listdir(model_dir))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the index is intact: no fallback needed
            latest = latest_checkpoint(model_dir)
            assert latest is not None
            variables, metadata = load_checkpoint(latest)
            for path in all_checkpoints(model_dir):
                load_checkpoint(path)  # every kept checkpoint is complete
        step = int(variables["global_step"])
        assert metadata == {"step": step} and step >= previous
        assert (variables["w"] == step).all() and (variables["b"] == step).all()
        previous = step
    CheckpointManager(model_dir)  # the next start: the killed writers' temporaries go
    assert not [name for name in os.listdir(model_dir) if name.endswith(".tmp")]
    assert len(all_checkpoints(model_dir)) <= 3
    print(f"kills that left a half-written temporary: {temporaries_seen} of 8")


# -- damaged files and refused content ------------------------------------------------------------------------
def _rewrite(path, change):
    """Rewrite the zip at ``path`` with ``change(name, bytes) -> bytes`` applied to each entry."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries:
            archive.writestr(name, change(name, data))


def _header_change(edit):
    def change(name, data):
        if name != "checkpoint.json":
            return data
        header = json.loads(data)
        edit(header)
        return json.dumps(header)

    return change


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b"not a zip at all"), "not a zip archive"),
    (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]), "not a zip archive"),
    (lambda path: _rewrite(path, lambda name, data: data if name == "checkpoint.json" else data[:-8]),
     "'dense/kernel.npy' declares .* but holds"),
    (lambda path: _rewrite(path, lambda name, data: b"" if name == "checkpoint.json" else data),
     "damaged or not a valid flowlearn checkpoint"),
    (lambda path: _rewrite(path, _header_change(lambda h: h.update(format="other"))), "not a flowlearn checkpoint"),
    (lambda path: _rewrite(path, _header_change(lambda h: h.update(format_version=99))), "format version 99"),
    (lambda path: _rewrite(path, _header_change(lambda h: h["variables"][0].update(shape=[2, 6]))),
     "variable 'dense/kernel' is listed as \\(2, 6\\)"),
    (lambda path: _rewrite(path, _header_change(lambda h: h["variables"][0].update(entry="gone.npy"))),
     "lists 'gone.npy', which the file lacks"),
    (lambda path: _rewrite(path, _header_change(lambda h: h.update(variables="all"))), "lists no valid variables"),
])
def test_damaged_file_is_one_value_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "model.ckpt-1.npz"
    save_checkpoint(tmp_path, 1, _variables(1))
    damage(path)
    with pytest.raises(ValueError, match=f"load_checkpoint: '{path}'.*{message}"):
        load_checkpoint(path)


def test_flipped_byte_in_an_array_is_caught_by_the_crc(tmp_path):
    path = tmp_path / "model.ckpt-1.npz"
    save_checkpoint(tmp_path, 1, {"w": numpy.zeros(1000, numpy.float32)})
    data = bytearray(path.read_bytes())
    data[data.index(b"\0" * 64) + 32] ^= 0xFF  # inside the array's values, past the npy header
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"load_checkpoint: '{path}' is damaged.*CRC"):
        load_checkpoint(path)


def test_pickled_object_array_in_a_file_is_refused(tmp_path):
    path = tmp_path / "model.ckpt-1.npz"
    save_checkpoint(tmp_path, 1, {"w": numpy.zeros(3)})

    def pickled(name, data):
        if name != "w.npy":
            return data
        import io
        buffer = io.BytesIO()
        numpy.lib.format.write_array(buffer, numpy.array([{"a": 1}], dtype=object), allow_pickle=True)
        return buffer.getvalue()

    _rewrite(path, pickled)
    with pytest.raises(ValueError, match="cannot read 'w.npy' as a numeric array"):
        load_checkpoint(path)


@pytest.mark.parametrize("value", [numpy.array([{"a": 1}], dtype=object), numpy.array(["a", "b"]),
                                   numpy.array([b"x"])])
def test_object_and_string_arrays_are_refused_on_save(tmp_path, value):
    with pytest.raises(TypeError, match=f"save_checkpoint: expected numeric arrays .* 'vocab'; received dtype "
                                        f"{value.dtype}.*pickle"):
        save_checkpoint(tmp_path, 1, {"vocab": value})
    assert not os.listdir(tmp_path)  # refused before anything was written


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "a\\b", 3])
def test_unsafe_variable_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="variable names"):
        save_checkpoint(tmp_path, 1, {name: numpy.zeros(1)})


def test_bad_step_metadata_and_variables_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="`step` >= 0; received step=-1"):
        save_checkpoint(tmp_path, -1, {})
    with pytest.raises(TypeError, match="JSON-serialisable `metadata`"):
        save_checkpoint(tmp_path, 1, {}, metadata={"state": numpy.zeros(2)})
    with pytest.raises(TypeError, match="`variables` as a dict"):
        save_checkpoint(tmp_path, 1, [numpy.zeros(1)])


# -- restoring into a model -------------------------------------------------------------------------------------
def test_restore_variables_names_missing_unexpected_and_misshaped_together(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"dense/kernel": numpy.ones((4, 3)), "dense/bias": numpy.ones(3),
                                         "old/kernel": numpy.ones(2)})
    variables, _ = load_checkpoint(path)
    kernel = fl.tensor(numpy.zeros((4, 2), numpy.float32))
    bias = fl.tensor(numpy.zeros(3, numpy.float32))
    targets = {"dense/kernel": kernel, "dense/bias": bias, "dense_1/kernel": fl.tensor(numpy.zeros(2))}
    with pytest.raises(ValueError) as caught:
        restore_variables(variables, targets, path)
    message = str(caught.value)
    assert path in message
    assert "missing from the checkpoint: ['dense_1/kernel']" in message
    assert "in the checkpoint but not in the model: ['old/kernel']" in message
    assert "'dense/kernel' (checkpoint (4, 3), model (4, 2))" in message
    assert not bias.numpy().any()  # nothing was written on a mismatch


def test_restore_variables_writes_in_place_with_the_targets_dtype(tmp_path):
    saved = {"w": numpy.arange(6.0).reshape(2, 3), "step": numpy.int64(9)}
    path = save_checkpoint(tmp_path, 9, saved)
    w = fl.tensor(numpy.zeros((2, 3), numpy.float32), requires_grad=True)
    step = numpy.zeros((), numpy.int64)
    restore_variables(load_checkpoint(path)[0], {"w": w, "step": step}, path)
    assert w.dtype == numpy.float32 and w.requires_grad
    numpy.testing.assert_array_equal(w.numpy(), saved["w"])
    assert step == 9


def test_filter_variables_matches_at_the_start_as_warm_start_does():
    variables = {"dense/kernel": 1, "dense/bias": 2, "dense_1/kernel": 3, "output/dense/kernel": 4}
    assert filter_variables(variables, "dense/") == {"dense/kernel": 1, "dense/bias": 2}
    assert filter_variables(variables, ".*kernel") == {"dense/kernel": 1, "dense_1/kernel": 3,
                                                         "output/dense/kernel": 4}
    assert filter_variables(variables, ["dense_1/", "output/"]) == {"dense_1/kernel": 3, "output/dense/kernel": 4}
    assert filter_variables(variables, None) == variables
