"""The responses kept for `previous_response_id` and `GET /v1/responses/{id}`: in memory,
bounded, least recently used first out."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

DEFAULT_CAPACITY = 1000


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as it was returned
    context: list[dict[str, Any]]  # input items of the conversation, without instructions

    def conversation(self) -> list[dict[str, Any]]:
        """The items a follow-up continues from: everything said so far, then the output."""
        return [*self.context, *self.response["output"]]


class ResponseStore:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, stored: StoredResponse) -> None:
        key = stored.response["id"]
        self._items[key] = stored
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        stored = self._items.get(response_id)
        if stored is not None:
            self._items.move_to_end(response_id)  # continued conversations stay longest
        return stored

    def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None


def get_store(request: Request) -> ResponseStore:
    """The application's store, created on first use."""
    store = getattr(request.app.state, "response_store", None)
    if store is None:
        store = request.app.state.response_store = ResponseStore()
    return store
