"""No request reaches a file outside the models folder.

Requests name models by key (`publisher/repo[@variant]`) or loaded identifier, never by
path. These checks are the one place that says what such a name may not look like, and
whether a path the library is about to read, write or delete stays inside its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

_DRIVE = re.compile(r"^[A-Za-z]:")


class PathEscapeError(ValueError):
    """A name or path that would leave the models folder."""


def check_model_name(name: str) -> None:
    """Refuses names that are file paths: absolute, with '..', '~', backslashes or NUL."""
    text = name.strip()
    if ("\x00" in text or "\\" in text or text.startswith(("/", "~"))
            or _DRIVE.match(text) or ".." in text.split("/")):
        raise PathEscapeError(f"Invalid model name {name!r}: name a model of the library by "
                              "its key (publisher/repo), not by a file path.")


def ensure_inside(root: Path, path: Path) -> Path:
    """path with symlinks resolved, when it stays inside root; else PathEscapeError."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()):
        raise PathEscapeError(f"Refused: {path} leads outside the models folder.")
    return resolved


def is_inside(root: Path, path: Path) -> bool:
    try:
        ensure_inside(root, path)
    except (PathEscapeError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def model_id_for(path: Path) -> str:
    """A readable id from a file name.

    'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'smollm2-135m-instruct'
    """
    stem = path.name.removesuffix(".gguf")
    stem = re.sub(r"[.-](?:i?q\d[\w]*|f16|f32|bf16)$", "", stem, flags=re.IGNORECASE)
    return stem.lower()
