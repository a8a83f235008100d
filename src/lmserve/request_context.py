"""What the server learns about one HTTP request while serving it: its id, the model that
served it, its tokens and its error code. The HTTP middleware opens a record per request
(api/request_log.py); the lower layers add to the current one without knowing of HTTP,
and log lines written while serving it carry its id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field


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
    # what the app's requests table shows while and after it runs (request_board.py)
    method: str = ""
    path: str = ""
    status: int | None = None
    started_at: float = field(default_factory=time.time)
    engine_state: Callable[[], str] | None = None  # asks the engine where its request is
    prompt_size: int = 0  # the prompt's tokens, known at submission (usage comes at the end)
    output_pieces: int = 0  # pieces streamed so far, one token each
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    finish_reason: str | None = None

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
