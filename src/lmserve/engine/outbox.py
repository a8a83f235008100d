"""The events of one tick, handed to their listeners together."""

from __future__ import annotations

import logging

from lmserve.engine.request import Event, GenerationRequest, HandOver

log = logging.getLogger("lmserve.engine")


class Outbox:
    """Holds the events a tick emits and hands them over at its end: requests that share
    a hand-over (e.g. the streams of one event loop) get one call for all of them, so a
    tick wakes each listener once, not once per token per stream."""

    def __init__(self) -> None:
        self._events: list[tuple[GenerationRequest, Event]] = []

    def put(self, req: GenerationRequest, event: Event) -> None:
        self._events.append((req, event))

    def flush(self) -> None:
        events, self._events = self._events, []
        groups: dict[HandOver, list[tuple[GenerationRequest, Event]]] = {}
        for req, event in events:
            if req.hand_over is None:
                _call(req.emit, event, [req])
            else:
                groups.setdefault(req.hand_over, []).append((req, event))
        for hand_over, items in groups.items():
            _call(hand_over, [(req.emit, event) for req, event in items],
                  [req for req, _ in items])


def _call(fn, arg, reqs: list[GenerationRequest]) -> None:
    try:
        fn(arg)
    except Exception:  # the listener is gone (closed loop): stop working for it
        log.debug("a listener is gone", exc_info=True)
        for req in reqs:
            req.cancel()
