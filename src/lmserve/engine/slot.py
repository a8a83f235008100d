"""A slot: one KV sequence of the context, and what outlives the requests it serves."""

from __future__ import annotations

from lmserve.engine.task import Task


class Slot:
    """Sequence `id` of the context: the tokens in its KV, and the task it runs, if any."""

    def __init__(self, slot_id: int) -> None:
        self.id = slot_id
        self.cache: list[int] = []  # the tokens in this sequence's KV, by position
        self.last_used = 0.0
        self.task: Task | None = None
