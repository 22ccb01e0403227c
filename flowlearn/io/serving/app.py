"""The HTTP side: TF Serving's REST routes over :mod:`.models`, :mod:`.codec` and :mod:`.batching`.

This module alone knows HTTP. Every route goes through one wrapper that turns the exceptions of the functions below
it into TF Serving's error shape, ``{"error": "..."}``, with its status code: 400 for what the client sent
(:class:`~.codec.RequestError`, and the ``ValueError`` a model raises for inputs it refuses), 404 for an unknown
model or version, 413 for a body over ``max_body_bytes``, 500 (logged with its traceback) for anything else, which
is a bug. No request can stop the server.

Unless ``ui=False``, the model playground's pages (:mod:`.playground`) are routed too: ``GET /``, ``GET /ui/NAME``
(and ``/ui/NAME/versions/V``), their ``view.json`` and ``/static/playground.js`` and ``style.css``, each with a strict
Content-Security-Policy.
"""
import asyncio
import contextlib
import json
import logging

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("flowlearn.io.serving needs starlette and uvicorn: pip install 'flowlearn[serve]'") from error

from . import codec, playground
from .batching import Batcher
from .models import ModelVersions, NotFoundError

__all__ = ["create_app"]

logger = logging.getLogger("flowlearn.serving")

_JSON = "application/json"
# Bodies above this are parsed and decoded in a worker thread, so one large request does not stall the others.
_PARSE_INLINE_BYTES = 64 * 1024


class _TooLarge(Exception):
    """The body is over max_body_bytes (HTTP 413)."""


class _WrongMethod(Exception):
    """A GET on a POST-only URL (HTTP 405)."""


_STATUS = ((codec.RequestError, 400), (NotFoundError, 404), (_WrongMethod, 405), (_TooLarge, 413))


def _json_response(payload, status=200, headers=None):
    return Response(codec.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _route(handler):
    """An endpoint from ``handler(request) -> payload``; its exceptions become ``{"error": ...}`` responses."""

    async def endpoint(request):
        try:
            return _json_response(await handler(request))
        except Exception as error:
            for kind, status in _STATUS:
                if isinstance(error, kind):
                    return _json_response({"error": str(error)}, status)
            logger.exception("internal error answering %s %s", request.method, request.url.path)
            return _json_response({"error": f"internal server error: {type(error).__name__}: {error}"}, 500)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _http_error(request, error):
    """Starlette's own 404 (no such route) and 405 (wrong method) in the same JSON shape."""
    return _json_response({"error": f"{error.detail}: {request.method} {request.url.path}"}, error.status_code,
                          getattr(error, "headers", None))


async def _read_body(request, limit):
    """The body, refused with 413 as soon as it is known to exceed ``limit``: never read whole when too big."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"the request body is {int(declared)} bytes; this server accepts at most {limit} "
                        "(max_body_bytes).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"the request body exceeds {limit} bytes (max_body_bytes).")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw):
    if not raw:
        raise codec.RequestError("the request body is empty; expected a JSON object.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise codec.RequestError(f"malformed JSON in the request body: {error}") from None


def _version(request):
    text = request.path_params.get("version")
    if text is None:
        return None
    if not (text.isdecimal() and text.isascii()):
        raise codec.RequestError(f"the version in the URL must be a non-negative integer; received {text!r}.")
    return int(text)


def _model_name(request):
    name = request.path_params["name"]
    if ":" in name:  # GET /v1/models/NAME:predict matched the status route
        raise _WrongMethod(f"{request.url.path} accepts POST only; received {request.method}.")
    return name


def create_app(model_base_path, model_name, *, max_batch_size=64, batch_timeout_ms=0.0, max_body_bytes=16 << 20,
               poll_interval_s=1.0, num_batch_threads=None, loader=None, ui=True):
    """A TF-Serving-compatible REST app (ASGI) serving the versions of one model; run it with uvicorn.

    The versions found under ``model_base_path`` are loaded before this returns; a background task looks again
    every ``poll_interval_s`` while the app runs.

    Parameters
    ----------
    model_base_path : str or path
        Directory of numbered version directories (``export_saved_model(obj, model_base_path)`` writes them).
    model_name : str
        The ``NAME`` in ``/v1/models/NAME``.
    max_batch_size : int, default 64
        Most rows one batched forward pass takes (1: no batching).
    batch_timeout_ms : float, default 0
        How long a request that finds no pass running may wait for others to share its forward pass. Requests
        that arrive while a pass runs batch together anyway; 0 (as in TF Serving's example batching
        configuration) gave the most requests/s with 32 clients in serving_bench.
    max_body_bytes : int, default 16 MiB
        Larger request bodies get 413, refused before they are read whole.
    poll_interval_s : float, default 1.0
        How often the directory is looked at for new and removed versions (0: only at start).
    num_batch_threads : int, optional
        Worker threads for forward passes (default: the number of cores, at most 4).
    loader : callable, optional
        ``loader(path) -> model``; default ``flowlearn.io.load_saved_model``.
    ui : bool, default True
        Serve the model playground: ``GET /`` lists the model's versions, ``GET /ui/NAME`` draws its input and shows
        its predictions (see docs/export-and-serving.md). False: those URLs are 404.

    Returns
    -------
    starlette.applications.Starlette
        ``app.state.versions`` (:class:`~flowlearn.io.serving.models.ModelVersions`) and ``app.state.batcher``
        (whose ``stats`` count requests, forward passes and rows).

    Examples
    --------
    >>> app = create_app("exports/iris", "iris")      # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8501)  # doctest: +SKIP
    """
    if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be a positive integer; received {max_body_bytes!r}.")
    if not isinstance(poll_interval_s, (int, float)) or not poll_interval_s >= 0:
        raise ValueError(f"poll_interval_s must be a number >= 0; received {poll_interval_s!r}.")
    versions = ModelVersions(model_base_path, model_name, loader=loader)
    batcher = Batcher(max_batch_size, batch_timeout_ms, num_batch_threads)
    versions.poll()

    def decode(raw, model, method):
        body = _parse_json(raw)
        if not isinstance(body, dict):
            raise codec.RequestError(f"the request body must be a JSON object; received {type(body).__name__}.")
        signature_name, signature = codec.resolve_signature(model.signatures, body.get("signature_name"), method)
        if method == "predict":
            return signature_name, signature, codec.decode_predict(body, signature)
        return signature_name, signature, codec.decode_examples(body, signature, method)

    async def run(model, signature_name, signature, request):
        try:
            if all(spec["shape"] and spec["shape"][0] is None for spec in signature.inputs):
                return await batcher.predict(model, signature_name, request.inputs, request.rows)
            # A graph fixed to its traced batch size cannot take other requests' rows.
            return await batcher.predict_alone(model, signature_name, request.inputs)
        except codec.RequestError:
            raise
        except ValueError as error:  # the model refusing its inputs: the client's request, not a bug
            raise codec.RequestError(str(error)) from error

    async def infer(request, method):
        name, version = request.path_params["name"], _version(request)
        raw = await _read_body(request, max_body_bytes)
        _, model = versions.get(name, version)
        if len(raw) > _PARSE_INLINE_BYTES:
            signature_name, signature, decoded = await asyncio.to_thread(decode, raw, model, method)
        else:
            signature_name, signature, decoded = decode(raw, model, method)
        outputs = await run(model, signature_name, signature, decoded)
        if method == "predict":
            return codec.encode_predict(outputs, decoded)
        if method == "classify":
            return codec.encode_classify(outputs, decoded.rows)
        return codec.encode_regress(outputs, decoded.rows)

    async def predict(request):
        return await infer(request, "predict")

    async def classify(request):
        return await infer(request, "classify")

    async def regress(request):
        return await infer(request, "regress")

    async def status(request):
        return versions.status(_model_name(request), _version(request))

    async def metadata(request):
        name = _model_name(request)
        number, model = versions.get(name, _version(request))
        signature_def = model.signature_def
        if not isinstance(signature_def.get("signature_def"), dict):
            signature_def = {"signature_def": signature_def}  # TF nests the signatures one level deeper
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(number)},
            "metadata": {"signature_def": signature_def},
        }

    async def view(request):
        name = request.path_params["name"]
        number, model = versions.get(name, _version(request))
        return playground.describe(model, name, number, versions.served_versions)

    prefixes = ("/v1/models/{name}", "/v1/models/{name}/versions/{version}")
    routes = []
    for prefix in prefixes:
        for verb, handler in (("predict", predict), ("classify", classify), ("regress", regress)):
            routes.append(Route(f"{prefix}:{verb}", _route(handler), methods=["POST"]))
    for prefix in prefixes:
        routes.append(Route(f"{prefix}/metadata", _route(metadata), methods=["GET"]))
        routes.append(Route(prefix, _route(status), methods=["GET"]))
    if ui:
        routes.extend(_ui_routes(versions, _route(view)))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        poller = asyncio.create_task(_poll_forever(versions, poll_interval_s)) if poll_interval_s > 0 else None
        served = versions.served_versions
        logger.info("serving model %r from %s: versions %s", model_name, versions.base_path, served or "none yet")
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            batcher.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
    app.state.versions, app.state.batcher = versions, batcher
    return app


# -- the playground ---------------------------------------------------------------------------------------------
_UI_HEADERS = {
    "Content-Security-Policy": playground.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _ui_routes(versions, view):
    """The playground's routes: pages and static files with the UI headers; ``view`` answers ``view.json``."""

    def page(handler):
        async def endpoint(request):
            try:
                status, text = 200, handler(request)
            except NotFoundError as error:
                status, text = 404, playground.error_page(404, str(error))
            except codec.RequestError as error:
                status, text = 400, playground.error_page(400, str(error))
            return HTMLResponse(text, status_code=status, headers=_UI_HEADERS)

        endpoint.__name__ = handler.__name__
        return endpoint

    def index(request):
        return playground.index_page(versions.name, versions.served_versions)

    def model_page(request):
        name, number = request.path_params["name"], _version(request)
        versions.get(name, number)  # 404 for another model or a version not served
        return playground.playground_page(name, number)

    async def static(request):
        try:
            content, media_type = playground.static_file(request.path_params["file"])
        except KeyError:
            return Response(f"no such file: {request.url.path}", status_code=404, media_type="text/plain",
                            headers=_UI_HEADERS)
        return Response(content, media_type=media_type, headers=_UI_HEADERS)

    async def favicon(request):
        # Browsers ask for it on every page: "no icon" rather than a 404 in their console.
        return Response(status_code=204, headers=_UI_HEADERS)

    async def view_json(request):
        response = await view(request)
        response.headers.update(_UI_HEADERS)
        return response

    return [
        Route("/", page(index), methods=["GET"]),
        Route("/static/{file}", static, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/ui/{name}", page(model_page), methods=["GET"]),
        Route("/ui/{name}/versions/{version}", page(model_page), methods=["GET"]),
        Route("/ui/{name}/view.json", view_json, methods=["GET"]),
        Route("/ui/{name}/versions/{version}/view.json", view_json, methods=["GET"]),
    ]


async def _poll_forever(versions, interval):
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(versions.poll)
        except Exception:  # a bug in polling must not stop the serving of what is loaded
            logger.exception("model %r: polling %s failed", versions.name, versions.base_path)
