"""The versions of one model under a base directory: found by polling, loaded whole, then served; knows no HTTP.

A version is a sub-directory with a numeric name (``model_base_path/3/``, as ``export_saved_model`` writes).
:meth:`ModelVersions.poll` lists the directory: a new version is loaded completely in the polling thread and only
then published, so requests never see a half-loaded model; a version that fails to load is reported with its error
and not served (it is tried again when its files change); a version whose directory is gone is unloaded (requests
already running on it finish on the object they hold). Requests name a version or get the newest one that loaded.
"""
import logging
import os
import threading

__all__ = ["ModelVersions", "NotFoundError", "AVAILABLE", "LOADING", "END"]

logger = logging.getLogger("flowlearn.serving")

# TF Serving's ManagerState names.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
_FINGERPRINT_LIMIT = 10000  # files looked at per version; an export has a handful


class NotFoundError(LookupError):
    """No such model or version (HTTP 404)."""


class _Version:
    __slots__ = ("number", "state", "error", "model", "fingerprint")

    def __init__(self, number, fingerprint):
        self.number, self.fingerprint = number, fingerprint
        self.state, self.error, self.model = LOADING, "", None


def _fingerprint(path):
    """Names, sizes and modification times of a version's files: a failed version is retried when they change."""
    seen = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            seen.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
            if len(seen) >= _FINGERPRINT_LIMIT:
                return tuple(seen)
    return tuple(seen)


def _default_loader(path):
    from ..saved_model import load_saved_model  # the loader imports only flowlearn.core and io

    return load_saved_model(path)


class ModelVersions:
    """The numeric versions of model ``name`` under ``base_path``, loaded with ``loader(path)``.

    Parameters
    ----------
    base_path : str or path
        The directory holding one numbered sub-directory per version; it must exist (it may be empty).
    name : str
        The model name requests use (``/v1/models/<name>``).
    loader : callable, optional
        ``loader(path) -> model``; default ``flowlearn.io.load_saved_model``.
    """

    def __init__(self, base_path, name, loader=None):
        base_path = os.fspath(base_path)
        if not os.path.isdir(base_path):
            raise ValueError(f"model_base_path must be an existing directory of numbered versions; received "
                             f"{base_path!r}.")
        if not isinstance(name, str) or not name or "/" in name or ":" in name:
            raise ValueError(f"model_name must be a non-empty string without '/' or ':'; received {name!r}.")
        self.base_path, self.name = base_path, name
        self._loader = loader or _default_loader
        # (number -> _Version, number -> loaded model of the AVAILABLE ones, newest served number): one tuple
        # replaced whole on every change, so a reader sees one consistent state without a lock.
        self._state = ({}, {}, None)
        self._poll_lock = threading.Lock()

    # -- polling (one thread at a time) --------------------------------------------------------------------------
    def _on_disk(self):
        found = {}
        with os.scandir(self.base_path) as entries:
            for entry in entries:
                # Only plain decimal names: a temporary or hidden directory beside them is not a version.
                if entry.name.isdecimal() and entry.name.isascii() and entry.is_dir():
                    found[int(entry.name)] = entry.path
        return found

    def poll(self):
        """Look at the directory once: load new (or changed failed) versions, unload removed ones."""
        with self._poll_lock:
            try:
                on_disk = self._on_disk()
            except OSError as error:
                # A passing error (a network mount) must not unload what is being served.
                logger.warning("model %r: cannot list %s (%s); keeping the loaded versions", self.name,
                               self.base_path, error)
                return
            versions = dict(self._state[0])
            for number in set(versions) - set(on_disk):
                logger.info("model %r: version %d is gone from disk; unloading it", self.name, number)
                del versions[number]
            # Newest first: the version new requests go to is ready soonest.
            for number in sorted(on_disk, reverse=True):
                known = versions.get(number)
                if known is not None and known.state != END:
                    continue  # loaded (or loading): kept as it is until its directory goes
                fingerprint = _fingerprint(on_disk[number])
                if known is not None and known.fingerprint == fingerprint:
                    continue  # failed, and unchanged since
                versions[number] = _Version(number, fingerprint)
                self._publish(versions)  # reports LOADING
                # A new object, not an edit of the published one: readers see LOADING until the next publish.
                version = versions[number] = _Version(number, fingerprint)
                try:
                    version.model = self._loader(on_disk[number])
                except Exception as error:  # a broken export is reported, never served, never fatal
                    version.state, version.error = END, f"{type(error).__name__}: {error}"
                    logger.warning("model %r: version %d failed to load: %s", self.name, number, version.error)
                else:
                    version.state = AVAILABLE
                    logger.info("model %r: version %d loaded", self.name, number)
            self._publish(versions)

    def _publish(self, versions):
        served = {n: v.model for n, v in versions.items() if v.state == AVAILABLE}
        self._state = (dict(versions), served, max(served) if served else None)

    # -- lookups (any thread) ------------------------------------------------------------------------------------
    def _check_name(self, name):
        if name != self.name:
            raise NotFoundError(f"Servable not found for request: model {name!r}; this server serves "
                                f"{self.name!r}.")

    def get(self, name, version=None):
        """``(version number, loaded model)`` for a request; the newest served version when ``version`` is None."""
        self._check_name(name)
        versions, served, newest = self._state
        if version is None:
            if newest is None:
                raise NotFoundError(f"Servable not found for request: Latest({name}); no version of model "
                                    f"{name!r} is loaded (looking in {self.base_path}).")
            return newest, served[newest]
        model = served.get(version)
        if model is None:
            known = versions.get(version)
            why = f": it is {known.state}" + (f" ({known.error})" if known.error else "") if known else ""
            raise NotFoundError(f"Servable not found for request: Specific({name}, {version}){why}; served "
                                f"versions: {sorted(served)}.")
        return version, model

    def status(self, name, version=None):
        """TF Serving's GetModelStatusResponse as a dict (newest version first)."""
        self._check_name(name)
        versions = self._state[0]
        if version is not None:
            if version not in versions:
                raise NotFoundError(f"Could not find any versions of model {name!r} with version {version}; known "
                                    f"versions: {sorted(versions)}.")
            chosen = [versions[version]]
        else:
            chosen = [versions[n] for n in sorted(versions, reverse=True)]
        return {"model_version_status": [_status(v) for v in chosen]}

    @property
    def served_versions(self):
        """The numbers of the versions requests can reach, oldest first."""
        return sorted(self._state[1])


def _status(version):
    failed = version.state == END and version.error
    return {
        "version": str(version.number),
        "state": version.state,
        "status": {"error_code": "UNKNOWN" if failed else "OK", "error_message": version.error},
    }
