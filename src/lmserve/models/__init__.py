"""Models: what is on disk and what is loaded.

The names below load the engine (llama.cpp, numpy) on first use only, so that commands
which only read the library or talk to a server start without it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmserve.models.manager import ModelManager, ModelNotFoundError
    from lmserve.models.model import GenerationStream, Model

_HOMES = {"ModelManager": "manager", "ModelNotFoundError": "manager",
          "GenerationStream": "model", "Model": "model"}

__all__ = ["GenerationStream", "Model", "ModelManager", "ModelNotFoundError"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
