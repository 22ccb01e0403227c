"""``serve``: run the REST app under uvicorn until interrupted (what ``flowlearn serve`` calls)."""
from .app import create_app

__all__ = ["serve"]


def serve(model_base_path, model_name, host="127.0.0.1", port=8501, *, log_level="info", access_log=False,
          **options):
    """Serve ``model_name`` from ``model_base_path`` over TF Serving's REST API; blocks until stopped.

    Parameters
    ----------
    model_base_path, model_name
        As :func:`create_app`.
    host : str, default "127.0.0.1"
        The address to listen on (``"0.0.0.0"`` for every interface).
    port : int, default 8501
        TF Serving's REST port.
    log_level : str, default "info"
        uvicorn's log level.
    access_log : bool, default False
        Log every request (costs throughput).
    **options
        ``max_batch_size``, ``batch_timeout_ms``, ``max_body_bytes``, ``poll_interval_s``, ``num_batch_threads``,
        ``ui`` (the playground pages, on by default): see :func:`create_app`.
    """
    import uvicorn

    app = create_app(model_base_path, model_name, **options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
