"""API keys: created once, kept only as hashes in `$LMSERVE_HOME/keys.json`, scoped.

A key is 32 random bytes, so a plain SHA-256 is enough at rest (a slow password hash
guards guessable secrets; these are not). The running server re-reads the file when it
changes, so `lmserve key create` and `revoke` take effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lmserve import config

Scope = Literal["inference", "admin"]
SCOPES: tuple[Scope, ...] = ("inference", "admin")
KEY_PREFIX = "lms-"
API_KEY_ENV = "LMSERVE_API_KEY"

log = logging.getLogger("lmserve.keys")


@dataclass(frozen=True)
class StoredKey:
    id: str  # public: what `key list` shows and `key revoke` takes
    name: str
    scope: Scope
    sha256: str
    created_at: int


def keys_file() -> Path:
    return config.home_dir() / "keys.json"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def read_keys(path: Path | None = None) -> list[StoredKey]:
    path = path or keys_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [StoredKey(**item) for item in data["keys"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"Cannot read the key file {path}: {exc!r}") from exc


def _write_keys(keys: list[StoredKey], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # created private: hashes are not secrets, but nobody else needs to read them
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"keys": [asdict(k) for k in keys]}, f, indent=2)
    tmp.replace(path)


def create_key(name: str | None = None, scope: Scope = "inference",
               path: Path | None = None) -> tuple[str, StoredKey]:
    """A new key (returned once, never stored) and its stored record."""
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; use one of: {', '.join(SCOPES)}.")
    path = path or keys_file()
    keys = read_keys(path)
    key_id = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
    record = StoredKey(id=key_id, name=name or f"key-{key_id}", scope=scope,
                       sha256=digest(secret), created_at=int(time.time()))
    _write_keys([*keys, record], path)
    return secret, record


def revoke_key(id_or_name: str, path: Path | None = None) -> StoredKey:
    path = path or keys_file()
    keys = read_keys(path)
    matches = [k for k in keys if id_or_name in (k.id, k.name)]
    if len(matches) != 1:
        what = "No key" if not matches else "More than one key"
        raise LookupError(f"{what} with id or name {id_or_name!r}; see `lmserve key list`.")
    _write_keys([k for k in keys if k is not matches[0]], path)
    return matches[0]


class KeyRing:
    """The keys a server accepts: the key file (re-read when it changes) plus an
    optional ad-hoc admin key given at start."""

    def __init__(self, path: Path, adhoc_key: str | None = None) -> None:
        self.path = path
        self._adhoc = digest(adhoc_key) if adhoc_key else None
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._stored: list[StoredKey] = []
        self._broken = False  # the file exists but cannot be read: fail closed

    def _current(self) -> list[StoredKey]:
        try:
            st = self.path.stat()
            signature: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            signature = None
        with self._lock:
            if signature != self._seen:
                try:
                    self._stored = read_keys(self.path) if signature else []
                    self._broken = False
                except ValueError as exc:
                    # keep the keys we had; with none, refuse every key rather than none
                    self._broken = True
                    log.error("%s; API keys stay required", exc)
                self._seen = signature
            return self._stored

    @property
    def enabled(self) -> bool:
        return bool(self._adhoc) or bool(self._current()) or self._broken

    def scope_of(self, presented: str) -> Scope | None:
        """The scope of a presented key, or None when no key matches."""
        given = digest(presented)
        found: Scope | None = None
        # every candidate is compared, in constant time, so timing says nothing
        if self._adhoc is not None and hmac.compare_digest(given, self._adhoc):
            found = "admin"
        for key in self._current():
            if hmac.compare_digest(given, key.sha256) and found is None:
                found = key.scope
        return found
