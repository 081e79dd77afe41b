"""The web layer: HTTP API (OpenAPI), server-rendered UI and live job updates (SSE).

``create_app(app)`` builds the ASGI application; ``server.run(app, host=, port=, worker=)``
serves it with uvicorn (and an embedded worker) for ``rhizome serve``.
"""

from rhizome.web.app import create_app

__all__ = ["create_app"]
