"""The API server: the app factory, its routes, the stream and its hub, the write service, auth,
metrics, the stores behind one contract, and the uvicorn runner. Never imports the dashboard side."""

from .factory import create_app

__all__ = ["create_app"]
