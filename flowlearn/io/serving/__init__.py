"""A TF-Serving-compatible REST server for SavedModels (``pip install 'flowlearn[serve]'``).

``create_app(model_base_path, model_name, ...)`` builds the ASGI app; ``serve(...)`` runs it with uvicorn (what
``flowlearn serve`` does). The routes are TF Serving's: ``POST /v1/models/NAME[/versions/V]:predict``,
``:classify``, ``:regress``; ``GET /v1/models/NAME[/versions/V]`` and ``.../metadata``. See
docs/export-and-serving.md.
"""
from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
