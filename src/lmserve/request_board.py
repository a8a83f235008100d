"""The requests this process is serving and the last ones it served, for the app's
requests table: the HTTP middleware (api/request_log.py) puts each request's record on
the board when it starts and moves it to the finished list when it ends. Only requests
that reached a model are shown; status polls and page assets would bury them."""

from __future__ import annotations

from collections import deque
from typing import Any

from lmserve.request_context import RequestRecord


class RequestBoard:
    def __init__(self, keep: int = 100) -> None:
        self._running: dict[int, RequestRecord] = {}
        self._finished: deque[RequestRecord] = deque(maxlen=keep)

    def begin(self, record: RequestRecord) -> None:
        self._running[id(record)] = record

    def end(self, record: RequestRecord) -> None:
        self._running.pop(id(record), None)
        if record.model is not None:
            self._finished.append(record)

    def rows(self) -> list[dict[str, Any]]:
        """In flight first, then finished; newest first in each."""
        running = [r for r in self._running.values() if r.model is not None]
        return ([_row(r, _running_state(r)) for r in reversed(running)]
                + [_row(r, _final_state(r)) for r in reversed(self._finished)])


def _running_state(record: RequestRecord) -> str:
    if record.engine_state is None:
        return "queued"  # not submitted yet: the model may still be loading
    state = record.engine_state()
    # the engine is done with it, the answer is still being sent
    return _final_state(record) if state == "finished" else state


def _final_state(record: RequestRecord) -> str:
    if record.error_code or (record.status or 0) >= 400:
        return "error"
    return "cancelled" if record.finish_reason == "cancelled" else "done"


def _row(record: RequestRecord, state: str) -> dict[str, Any]:
    counted = record.counted_tokens
    return {"id": record.request_id, "method": record.method, "path": record.path,
            "route": record.route, "model": record.model, "state": state,
            "status": record.status, "started_at": record.started_at,
            "prompt_tokens": record.prompt_tokens if counted else record.prompt_size,
            "output_tokens": record.completion_tokens if counted else record.output_pieces,
            "ttft_s": record.ttft_s, "tokens_per_s": record.tokens_per_s}
