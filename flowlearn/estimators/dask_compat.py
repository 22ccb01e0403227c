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
        is_collection = self._dask.is_dask_collection
        # Every collection in one call, as dask.persist does: collections sharing inputs (y computed from X)
        # are then optimized and submitted as one graph, not as two graphs that disagree about shared keys.
        places = [(position, key) for position, value in enumerate(args)
                  for key in (value if isinstance(value, dict) else [None])
                  if is_collection(value if key is None else value[key])]
        collections = [args[position] if key is None else args[position][key] for position, key in places]
        persisted = dict(zip(places, default_client().persist(collections, **kwargs))) if collections else {}
        results = []
        for position, value in enumerate(args):
            if isinstance(value, dict):
                results.append({key: persisted.get((position, key), item) for key, item in value.items()})
            else:  # numpy arrays and futures stay as they are: already where they need to be
                results.append(persisted.get((position, None), value))
        return tuple(results)


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
