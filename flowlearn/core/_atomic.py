"""Atomic file writes, and the clean-up of what a writer killed mid-write leaves behind.

A file is written as ``.<name>.<pid>.<random>.tmp`` in the folder of its target, flushed and synced
to disk, then renamed over the target (one ``os.replace``, atomic on POSIX and Windows), and the
folder is synced so that the rename itself survives a power cut. A reader therefore sees either the
old file or the new one, never a mixture. A writer killed before the rename leaves its temporary;
:func:`remove_stale_temporaries` deletes those whose process no longer exists. The pid in the name is
what tells a dead writer's leftover from a live writer's file in progress.

Used by model files (``flowlearn.layers.saving``), checkpoints (``flowlearn.io.checkpoint``) and the
pickle-free estimator files (``flowlearn.estimators._persistence``).
"""
import contextlib
import os
import re
import tempfile
import threading

__all__ = ["atomic_write", "remove_stale_temporaries", "sync_folder"]

# Temporaries this process is writing now: another thread may be writing the same target.
_ACTIVE = set()
_ACTIVE_LOCK = threading.Lock()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_exists(pid):
    """Whether a process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process (or no way to tell): keep its file
    return True


def sync_folder(folder):
    """Make a rename or unlink in ``folder`` durable (fsync of the directory; a no-op where the OS has none)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a directory; its renames are durable through the file's own sync
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder, base):
    """Delete ``.<base>.<pid>.*.tmp`` files in ``folder`` left by writers that died mid-write.

    ``base`` is a file name, or a compiled regular expression that the name part must match in full
    (e.g. every ``model.ckpt-<step>.npz``). A file is stale when its pid is no longer a process, or
    is this process but no thread of it is writing that file. A live writer's file (another pid that
    still exists) is left alone: the cost of a reused pid is only that an orphan waits for a later
    clean-up. Returns the paths removed.
    """
    base_pattern = base.pattern if isinstance(base, re.Pattern) else re.escape(base)
    pattern = re.compile(r"\.(?:" + base_pattern + r")\.(\d+)\.[^/\\]*\.tmp\Z")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    with _ACTIVE_LOCK:
        active = set(_ACTIVE)
    removed = []
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        pid, full = int(match[1]), os.path.join(folder, name)
        stale = full not in active if pid == os.getpid() else not _process_exists(pid)
        if stale:
            try:
                os.unlink(full)
            except OSError:
                continue  # another process removed it first
            removed.append(full)
    return removed


@contextlib.contextmanager
def atomic_write(path, sync_rename=True):
    """A binary stream whose content replaces ``path`` in one step when the ``with`` block succeeds.

    On an exception (or a kill) ``path`` keeps its previous content; the temporary is removed when
    Python still runs, and left for :func:`remove_stale_temporaries` when it does not. The new file
    gets the permissions a plain ``open`` would give (mkstemp's 0600 would make it private).

    The content is always synced before the rename. ``sync_rename=False`` skips the folder sync after
    it: for a caller that renames another file into the same folder next and syncs the folder then
    (one directory fsync makes both renames durable); until then a power cut may undo the rename.

    >>> with atomic_write("weights.bin") as stream:  # doctest: +SKIP
    ...     stream.write(payload)
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=folder)
    with _ACTIVE_LOCK:
        _ACTIVE.add(temporary)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        if sync_rename:
            sync_folder(folder)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(temporary)
