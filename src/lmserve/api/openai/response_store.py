"""The responses kept for `previous_response_id` and `GET /v1/responses/{id}`.

They live in SQLite under $LMSERVE_HOME (`responses.sqlite3`, WAL mode), so a restart
loses no conversation; the store is bounded, least recently used first out."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from lmserve.api.errors import APIError
from lmserve.config import home_dir

DEFAULT_CAPACITY = 1000
FILE_NAME = "responses.sqlite3"


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as it was returned
    context: list[dict[str, Any]]  # input items of the conversation, without instructions

    def conversation(self) -> list[dict[str, Any]]:
        """The items a follow-up continues from: everything said so far, then the output."""
        return [*self.context, *self.response["output"]]


class ResponseStore:
    """`path` None keeps the responses in memory only."""

    def __init__(self, path: Path | None = None, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        # calls come from the event loop and from worker threads; the lock serialises them
        self._db = sqlite3.connect(str(path) if path else ":memory:",
                                   check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, "
                             "response TEXT NOT NULL, context TEXT NOT NULL, "
                             "used INTEGER NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS responses_used ON responses (used)")
            (last,) = self._db.execute("SELECT COALESCE(MAX(used), 0) FROM responses"
                                       ).fetchone()
        self._clock = last  # orders uses: the smallest is the least recently used

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def put(self, stored: StoredResponse) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                             (stored.response["id"], json.dumps(stored.response),
                              json.dumps(stored.context), self._tick()))
            self._db.execute("DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                             "ORDER BY used DESC LIMIT -1 OFFSET ?)", (self.capacity,))

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute("SELECT response, context FROM responses WHERE id = ?",
                                   (response_id,)).fetchone()
            if row is None:
                return None
            # continued conversations stay longest
            self._db.execute("UPDATE responses SET used = ? WHERE id = ?",
                             (self._tick(), response_id))
        return StoredResponse(json.loads(row[0]), json.loads(row[1]))

    def delete(self, response_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
            return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def previous_conversation(store: ResponseStore, previous_id: str | None
                          ) -> list[dict[str, Any]]:
    """The items a request naming `previous_response_id` continues from ([] for none)."""
    if previous_id is None:
        return []
    stored = store.get(previous_id)
    if stored is None:
        raise APIError(404, f"Previous response with id '{previous_id}' not found.",
                       param="previous_response_id", code="previous_response_not_found")
    return stored.conversation()


def get_store(request: Request) -> ResponseStore:
    """The application's store, opened on first use."""
    store = getattr(request.app.state, "response_store", None)
    if store is None:
        store = request.app.state.response_store = ResponseStore(home_dir() / FILE_NAME)
    return store
