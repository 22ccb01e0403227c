"""Make dask-ml's adaptive searches run on current dask: :func:`patch_dask_ml_searches`.

dask-ml's ``IncrementalSearchCV``, ``HyperbandSearchCV``, ``SuccessiveHalvingSearchCV`` and
``InverseDecaySearchCV`` run their loop as a coroutine on the ``distributed.Client``'s event loop and call the
top-level ``dask.persist`` there. Since dask 2025.3 ``dask.persist`` refuses a client seen from its own event
loop ("Attempting to use an asynchronous Client in a synchronous context of `dask.compute`"), so every search
fails before training anything, whatever the estimator (dask/dask-ml issue 1016, open as of dask-ml 2025.1.0).
The fix upstream is to persist through the client; this module applies exactly that to dask-ml's search
module, leaving dask itself and every other caller of ``dask.persist`` alone.
"""
__all__ = ["patch_dask_ml_searches"]


class _PersistThroughClient:
    """Stands in for the ``dask`` module inside dask-ml's search module: all of dask, but ``persist`` goes
    through the default client (which runs from the event loop) instead of ``dask.persist``."""

    def __init__(self, dask):
        self._dask = dask

    def __getattr__(self, name):
        return getattr(self._dask, name)

    def persist(self, *args, **kwargs):
        """``dask.persist(*args)`` for the collections, and dicts of them, that dask-ml persists."""
        from distributed import default_client

        # `priority` ran the searches' speculative partial_fit calls after the others; it only orders work.
        kwargs.pop("priority", None)
        client = default_client()

        def persisted(value):
            if isinstance(value, dict):
                keys = [key for key in value if self._dask.is_dask_collection(value[key])]
                done = dict(zip(keys, client.persist([value[key] for key in keys], **kwargs))) if keys else {}
                return {key: done.get(key, item) for key, item in value.items()}
            if self._dask.is_dask_collection(value):
                return client.persist(value, **kwargs)
            return value  # numpy arrays and futures: already where they need to be

        return tuple(persisted(value) for value in args)


def patch_dask_ml_searches():
    """Let dask-ml's adaptive searches (``IncrementalSearchCV``, ``HyperbandSearchCV``, ...) run on dask >= 2025.3.

    Call it once, after starting a ``distributed.Client`` and before ``search.fit``. It changes one name in
    dask-ml's search module (``dask_ml.model_selection._incremental``): its calls of ``dask.persist`` go through
    the default client, which is what dask-ml's maintainers name as the fix (dask/dask-ml issue 1016). Nothing
    else changes, and with a dask that does not need it, nothing is done. Calling it again does nothing.

    Returns
    -------
    bool
        True when the search module now persists through the client (patched now or before), False when this
        dask does not need it.

    Examples
    --------
    >>> from dask_ml.model_selection import HyperbandSearchCV  # doctest: +SKIP
    >>> flowlearn.estimators.patch_dask_ml_searches()  # doctest: +SKIP
    >>> HyperbandSearchCV(DNNClassifier(), {"learning_rate": [1e-3, 1e-2]}, max_iter=9).fit(X, y, classes=[0, 1])
    ... # doctest: +SKIP
    """
    try:
        import dask
        import dask.base
        from dask_ml.model_selection import _incremental
    except ImportError as error:
        raise ImportError(
            "patch_dask_ml_searches needs dask and dask-ml: pip install 'flowlearn[dask]'. "
            f"The import failed with: {error}"
        ) from error
    if isinstance(_incremental.dask, _PersistThroughClient):
        return True
    if not hasattr(dask.base, "_ensure_not_async"):  # before dask 2025.3: dask.persist takes the loop's client
        return False
    _incremental.dask = _PersistThroughClient(_incremental.dask)
    return True
