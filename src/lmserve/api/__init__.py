"""HTTP layer: routing, validation, SSE, errors and CORS."""

from lmserve.api.app import create_app

__all__ = ["create_app"]
