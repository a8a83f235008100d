"""The server log's two formats: text lines for people, one JSON object per line for log
pipelines (`--log-format json`). Both carry the request id of the line's request."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from lmserve.request_context import RequestIdFilter

LOG_FORMATS = ("text", "json")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s",
                         datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "")
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


def log_entry(record: logging.LogRecord, time: Any) -> dict[str, Any]:
    """A record as a JSON-ready object: time, level, logger, message, the request id and
    the structured values given with extra={"fields": {...}}."""
    entry: dict[str, Any] = {
        "time": time,
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    if getattr(record, "request_id", ""):
        entry["request_id"] = record.request_id
    entry.update(getattr(record, "fields", None) or {})
    return entry


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id, the record's `fields` (structured values
    given with extra={"fields": {...}}) and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry = log_entry(record, time)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """One handler on the root logger: lmserve's, uvicorn's and llama.cpp's Python-side
    lines all come out in the chosen format."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"Unknown log format {log_format!r}; use one of "
                         f"{', '.join(LOG_FORMATS)}.")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
