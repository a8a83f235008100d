"""The `[[remote]]` entries of config.toml: one per model served upstream.

    [[remote]]
    id = "llama-70b"                      # the id clients send as `model`
    upstreams = ["http://node1:8000/v1", "http://node2:8000/v1"]
    api_key_env = "NODES_KEY"             # the upstream key is read from this variable
    upstream_model = "meta-llama/Llama-3.3-70B-Instruct"   # when it differs from id
    connect_timeout = 5.0
    read_timeout = 600.0

The key itself is never written to the file: only the variable's name is.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lmserve.config import config_file, load_config, read_toml, save_config

TABLE = "remote"


@dataclass(frozen=True)
class RemoteModel:
    id: str
    upstreams: tuple[str, ...]
    api_key_env: str = ""
    upstream_model: str = ""  # "" = the same as id
    connect_timeout: float = 5.0
    read_timeout: float = 600.0  # between two bytes of an answer, not for the whole answer

    @property
    def served_name(self) -> str:
        return self.upstream_model or self.id

    def api_key(self) -> str | None:
        """The upstream's key, read from the environment at each request (so a rotated
        key needs no restart); None when no variable is named or it is unset."""
        return os.environ.get(self.api_key_env) or None if self.api_key_env else None

    def to_table(self) -> dict[str, Any]:
        table = asdict(self)
        table["upstreams"] = list(self.upstreams)
        defaults = RemoteModel("", ())
        return {name: value for name, value in table.items()
                if name in ("id", "upstreams") or value != getattr(defaults, name)}


def normalized_upstream(url: str) -> str:
    """An OpenAI-compatible base URL, `http(s)://host[:port]/v1` without a trailing slash
    (a bare `http://host:port` gets `/v1`)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Upstream {url!r} is not an http(s) URL.")
    return url if parts.path else url + "/v1"


def parse_entry(table: Any, where: str) -> RemoteModel:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: a [[remote]] entry must be a table.")
    known = {"id", "upstreams", "api_key_env", "upstream_model", "connect_timeout",
             "read_timeout"}
    if unknown := sorted(set(table) - known):
        raise ValueError(f"{where}: unknown [[remote]] setting '{unknown[0]}'; known: "
                         f"{', '.join(sorted(known))}.")
    model_id = table.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError(f"{where}: a [[remote]] entry needs an `id` string.")
    upstreams = table.get("upstreams")
    if isinstance(upstreams, str):
        upstreams = [upstreams]
    if not isinstance(upstreams, list) or not upstreams \
            or not all(isinstance(u, str) for u in upstreams):
        raise ValueError(f"{where}: remote '{model_id}' needs `upstreams`, a list of URLs.")
    values: dict[str, Any] = {"id": model_id.strip(),
                              "upstreams": tuple(normalized_upstream(u) for u in upstreams)}
    for name in ("api_key_env", "upstream_model"):
        if name in table:
            if not isinstance(table[name], str):
                raise ValueError(f"{where}: remote '{model_id}': `{name}` must be a string.")
            values[name] = table[name].strip()
    for name in ("connect_timeout", "read_timeout"):
        if name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{where}: remote '{model_id}': `{name}` must be a "
                                 "positive number of seconds.")
            values[name] = float(value)
    return RemoteModel(**values)


def parse_entries(tables: Any, path: Path) -> list[RemoteModel]:
    if not isinstance(tables, list):
        raise ValueError(f"Invalid config file {path}: `remote` must be [[remote]] tables.")
    entries = [parse_entry(t, f"Invalid config file {path}") for t in tables]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"Invalid config file {path}: remote '{duplicate}' is listed twice.")
    return entries


def load_remotes(path: Path | None = None) -> list[RemoteModel]:
    path = path or config_file()
    return parse_entries(read_toml(path).get(TABLE, []), path)


def save_remotes(entries: list[RemoteModel], path: Path | None = None) -> Path:
    path = path or config_file()
    return save_config(load_config(path), path, {TABLE: [e.to_table() for e in entries]})
