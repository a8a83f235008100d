"""What OpenAI's chat and completion streams share: data-only events with `[DONE]` last,
a failure reported in-band in OpenAI's envelope, and the usage chunk at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmserve.api.errors import as_api_error, error_body
from lmserve.api.openai.protocol import usage
from lmserve.api.sse import DONE, sse_data
from lmserve.api.usage import TokenUsage
from lmserve.engine import Done

Extras = Callable[[Done], dict[str, Any]]


def _error_event(exc: Exception) -> dict[str, Any]:
    err = as_api_error(exc)
    return error_body(err.message, err.type, err.param, err.code)


def in_band_error(exc: Exception) -> list[bytes]:
    """A failure of a stream that opened before its first chunk (a model that failed to
    load just in time): the error in OpenAI's envelope, then [DONE]."""
    return [sse_data(_error_event(exc)), DONE]


class ChunkTranslator:
    closing = DONE
    frame = staticmethod(sse_data)
    chunk_object: str  # the `object` of each streamed chunk
    shared_prompt: bool  # whether the choices share one prompt, counted once

    def __init__(self, head: dict[str, Any], n: int, *, include_usage: bool,
                 extras: Extras | None) -> None:
        self.head = head
        self.n = n
        self.include_usage = include_usage
        self.extras = extras  # the native routes' `stats` and `model_info`
        self.dones: dict[int, Done] = {}

    def end(self) -> list[dict[str, Any]]:
        if len(self.dones) < self.n:
            raise RuntimeError("generation ended without a result")
        if not (self.include_usage or self.extras):
            return []
        return [{**self.head, "object": self.chunk_object, "choices": [],
                 "usage": self.usage(), **self.extra()}]

    def fail(self, exc: Exception) -> list[dict[str, Any]]:
        return [_error_event(exc)]

    def usage(self) -> dict[str, Any]:
        return usage(TokenUsage.of(list(self.dones.values()), shared_prompt=self.shared_prompt))

    def extra(self) -> dict[str, Any]:
        return self.extras(self.dones[0]) if self.extras and 0 in self.dones else {}

    def chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {**self.head, "object": self.chunk_object,
                                   "choices": [choice]}
        if self.include_usage:
            payload["usage"] = None
        return payload
