"""Per-model default load settings: what a model loads with when the load names no value
(a just-in-time load, `lmserve load`, the app's Load). Kept in a file of their own,
`$LMSERVE_HOME/model-defaults.json`, keyed by library key, as LM Studio keeps one per
model; the config file's [server] values stay the defaults of models without one."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from lmserve import config
from lmserve.models import load_options

log = logging.getLogger("lmserve.models")

# the settings a model may keep, with the check each value must pass; and the llama.cpp
# options of load_options.py
SETTINGS: dict[str, tuple[type, float]] = {
    "context_length": (int, 64),  # (type, smallest value)
    "parallel": (int, 1),
    "ttl": (float, 0),  # idle seconds before unloading; 0: never
}
NAMES = (*SETTINGS, *load_options.OPTIONS)


def defaults_file() -> Path:
    return config.home_dir() / "model-defaults.json"


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """The settings as stored; ValueError names the first bad one."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in NAMES:
            raise ValueError(f"'{name}' is not a load setting; use {', '.join(NAMES)}.")
        if value is None:
            continue
        if name in load_options.OPTIONS:
            out.update(load_options.normalized({name: value}))
            continue
        kind, least = SETTINGS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind is int and not isinstance(value, int)) or value < least:
            raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}"
                             f" of at least {least:g}.")
        out[name] = kind(value)
    return out


class LoadDefaults:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or defaults_file()
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {k: checked(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("Cannot read %s (%r); loading with the general defaults", self.path, exc)
            return {}

    def get(self, key: str) -> dict[str, Any]:
        return self._read().get(key, {})

    def set(self, key: str, values: dict[str, Any]) -> dict[str, Any]:
        """Replace a model's saved settings (none: forget them); ValueError if one is bad."""
        settings = checked(values)
        with self._lock:
            saved = self._read()
            if settings:
                saved[key] = settings
            else:
                saved.pop(key, None)
            config.write_atomic(self.path, json.dumps(saved, indent=2, sort_keys=True))
        return settings
