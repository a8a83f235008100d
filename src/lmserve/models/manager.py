"""The loaded models and how a request's `model` string picks one of them."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from lmserve.models.model import Model

log = logging.getLogger("lmserve.models")


class ModelNotFoundError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        listing = ", ".join(known) or "none"
        super().__init__(f"The model '{name}' does not exist. Loaded models: {listing}.")
        self.name = name


def model_id_for(path: Path) -> str:
    """A readable id from a file name.

    'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'smollm2-135m-instruct'
    """
    stem = path.name.removesuffix(".gguf")
    stem = re.sub(r"[.-](?:i?q\d[\w]*|f16|f32|bf16)$", "", stem, flags=re.IGNORECASE)
    return stem.lower()


class ModelManager:
    def __init__(self) -> None:
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    def load(
        self,
        path: Path,
        *,
        model_id: str | None = None,
        context_length: int,
        parallel: int,
        max_queue: int = 64,
        threads: int | None = None,
    ) -> Model:
        model_id = model_id or model_id_for(path)
        with self._lock:
            if model_id in self._models:
                return self._models[model_id]
        model = Model(model_id, path, context_length=context_length, parallel=parallel,
                      max_queue=max_queue, threads=threads)
        with self._lock:
            self._models[model_id] = model
        log.info("loaded %s from %s (context %d per slot, %d slots)", model_id, path,
                 model.context_length, parallel)
        return model

    def loaded(self) -> list[Model]:
        with self._lock:
            return list(self._models.values())

    def get(self, model_id: str) -> Model | None:
        with self._lock:
            return self._models.get(model_id)

    def resolve(self, name: str) -> Model:
        """The model a request asked for. Any name is the loaded model while exactly one
        is loaded, so clients that hard-code a name (e.g. 'local-model') keep working."""
        with self._lock:
            if name in self._models:
                return self._models[name]
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            raise ModelNotFoundError(name, list(self._models))

    def unload_all(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
