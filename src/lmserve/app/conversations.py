"""Saved chats of the app: one SQLite file under $LMSERVE_HOME, one row per conversation."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from lmserve import config

ROLES = ("system", "user", "assistant")


def database_file() -> Path:
    return config.home_dir() / "conversations.sqlite3"


class ConversationStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY, title TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, messages TEXT NOT NULL, settings TEXT NOT NULL)""")
        self._db.commit()
        self._lock = threading.Lock()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, title, created, updated FROM conversations "
                                    "ORDER BY updated DESC").fetchall()
        return [{"id": r[0], "title": r[1], "created": r[2], "updated": r[3]} for r in rows]

    def get(self, conversation_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT id, title, created, updated, messages, settings "
                                   "FROM conversations WHERE id = ?",
                                   (conversation_id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "title": row[1], "created": row[2], "updated": row[3],
                "messages": json.loads(row[4]), "settings": json.loads(row[5])}

    def create(self, title: str, messages: list[dict[str, Any]],
               settings: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        conversation_id = uuid.uuid4().hex
        with self._lock:
            self._db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                             (conversation_id, title, now, now, json.dumps(messages),
                              json.dumps(settings)))
            self._db.commit()
        return self.get(conversation_id) or {}

    def update(self, conversation_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        columns = {name: json.dumps(value) if name != "title" else value
                   for name, value in changes.items()}
        if columns:
            assignments = ", ".join(f"{name} = ?" for name in columns)  # names are checked
            with self._lock:
                self._db.execute(f"UPDATE conversations SET {assignments}, updated = ? "
                                 "WHERE id = ?", (*columns.values(), time.time(),
                                                  conversation_id))
                self._db.commit()
        return self.get(conversation_id)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            deleted = self._db.execute("DELETE FROM conversations WHERE id = ?",
                                       (conversation_id,)).rowcount
            self._db.commit()
        return bool(deleted)

    def close(self) -> None:
        self._db.close()


def check_changes(body: Any) -> dict[str, Any]:
    """The title, messages and settings of a request body, or ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    unknown = set(body) - {"title", "messages", "settings"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a field of a conversation")
    if "title" in body and (not isinstance(body["title"], str) or len(body["title"]) > 200):
        raise ValueError("title: must be a string of at most 200 characters")
    if "settings" in body and not isinstance(body["settings"], dict):
        raise ValueError("settings: must be an object")
    messages = body.get("messages", [])
    if not isinstance(messages, list):
        raise ValueError("messages: must be a list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}]: needs a role ({', '.join(ROLES)}) and a "
                             "string content")
    return body
