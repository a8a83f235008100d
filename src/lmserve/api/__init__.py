"""HTTP layer: routing, validation, SSE, errors and CORS.

`create_app` loads the whole server on first use only, so that the command line can use
small helpers of this package (host names) without it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmserve.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lmserve.api.app import create_app

    return create_app
