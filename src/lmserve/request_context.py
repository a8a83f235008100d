"""What the server learns about one HTTP request while serving it: its id, the model that
served it, its tokens and its error code. The HTTP middleware opens a record per request
(api/request_log.py); the lower layers add to the current one without knowing of HTTP,
and log lines written while serving it carry its id."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestRecord:
    request_id: str
    route: str | None = None  # the matched route's template
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    counted_tokens: bool = False  # whether any usage was added (0 tokens is a count)
    error_code: str | None = None

    def add_usage(self, prompt: int, completion: int = 0, cached: int = 0) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_tokens += cached
        self.counted_tokens = True


current_request: ContextVar[RequestRecord | None] = ContextVar("current_request",
                                                               default=None)


def current_record() -> RequestRecord | None:
    return current_request.get()


def current_request_id() -> str:
    record = current_request.get()
    return record.request_id if record else ""


class RequestIdFilter(logging.Filter):
    """Gives every log record a `request_id`: the one it was logged with (the engine
    passes its request's tag), else the request being served in this context, else ''."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = current_request_id()
        return True


def note_model(model: str) -> None:
    if (record := current_request.get()) is not None:
        record.model = model


def note_error(code: str) -> None:
    if (record := current_request.get()) is not None:
        record.error_code = code
