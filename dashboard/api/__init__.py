"""The HTTP API: ``create_app`` builds it; each module holds one group of routes."""

from .app import create_app

__all__ = ["create_app"]
