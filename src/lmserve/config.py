"""Server settings and where lmserve keeps its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234


def home_dir() -> Path:
    """$LMSERVE_HOME, else the per-user data folder."""
    env = os.environ.get("LMSERVE_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("lmserve"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    """Written by a running server: its pid and address, for `server status` and `stop`."""
    return home_dir() / "server.json"


def log_file() -> Path:
    path = home_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path / "server.log"


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str | None = None  # a GGUF path or model id; None = the bundled model
    context_length: int = 4096  # per slot: what one conversation can hold
    parallel: int = 4
    max_queue: int = 64
    cors: bool = True
    threads: int | None = None
