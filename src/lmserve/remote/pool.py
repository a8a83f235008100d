"""The upstreams of remote models and which one takes the next request.

An upstream is one base URL. Several remote ids may share it (a node serving two
models), so its outstanding count is one per URL: a request goes to the least busy node
whatever model it asks for. Upstreams marked down (by a failed connection or health
check) are skipped until a health check finds them answering again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Upstream:
    url: str
    api_key_env: str = ""  # the key its health checks send
    outstanding: int = 0  # requests sent and not yet answered in full
    served: int = 0
    up: bool = True
    last_error: str | None = None
    messages_api: bool | None = None  # False once its /messages is found missing
    changed_at: float = field(default_factory=time.time)

    def mark_down(self, reason: str) -> bool:
        """Returns whether it was up until now."""
        was_up, self.up, self.last_error = self.up, False, reason
        if was_up:
            self.changed_at = time.time()
        return was_up

    def mark_up(self) -> bool:
        """Returns whether it was down until now."""
        was_down, self.up, self.last_error = not self.up, True, None
        if was_down:
            self.changed_at = time.time()
        return was_down

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "health": "up" if self.up else "down",
                "outstanding": self.outstanding, "served": self.served,
                "last_error": self.last_error, "since": int(self.changed_at)}


class UpstreamPool:
    """One remote model's upstreams."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        self.upstreams = upstreams
        self._turn = 0

    def pick(self, exclude: list[Upstream]) -> Upstream | None:
        """The up upstream with the fewest outstanding requests, ties taken in turn; when
        every one is down, the least busy of those, since failing a request that one of
        them might serve helps no one. None when all were tried."""
        left = [u for u in self.upstreams if u not in exclude]
        candidates = [u for u in left if u.up] or left
        if not candidates:
            return None
        fewest = min(u.outstanding for u in candidates)
        tied = [u for u in candidates if u.outstanding == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]

    @property
    def healthy(self) -> bool:
        return any(u.up for u in self.upstreams)
