"""Drives the real Engine on the bundled model in-process (the `engine_model` and
`make_engine` fixtures are in conftest.py): a listener that collects a request's events
from the engine thread, and helpers to submit requests."""

from __future__ import annotations

import queue
import threading

from lmserve.engine import (
    Delta,
    Done,
    Engine,
    Failed,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
)

GREEDY = SamplingParams(temperature=0.0, ignore_eos=True)
MARKER = 1000  # a token id none of the ordinary prompts below hold
WAIT = 120  # seconds: only reached when the engine hangs


class Listener:
    """Collects one request's events from the engine thread."""

    def __init__(self, journal: list | None = None) -> None:
        self.events: queue.Queue = queue.Queue()
        self.text = ""
        self.ended = threading.Event()
        self.journal = journal  # shared by several listeners: every event in order

    def __call__(self, event) -> None:
        self.events.put(event)
        if self.journal is not None:
            self.journal.append((self, event))
        if isinstance(event, Done | Failed):
            self.ended.set()

    def first_delta(self) -> None:
        while True:
            event = self.events.get(timeout=WAIT)
            assert not isinstance(event, Failed | Done), event
            if isinstance(event, Delta):
                self.text += event.text
                return

    def end(self) -> Done | Failed:
        while True:
            event = self.events.get(timeout=WAIT)
            if isinstance(event, Delta):
                self.text += event.text
            if isinstance(event, Done | Failed):
                return event


def request(prompt: list[int], max_tokens: int = 16, sampling=GREEDY,
            journal: list | None = None):
    listener = Listener(journal)
    return GenerationRequest(prompt, sampling, listener, max_tokens=max_tokens), listener


def prompt_of(model: LlamaModel, text: str) -> list[int]:
    tokens = model.tokenize(text, add_special=True, parse_special=False)
    assert MARKER not in tokens
    return tokens


def alone(engine: Engine, prompt: list[int], max_tokens: int = 16) -> str:
    req, listener = request(prompt, max_tokens)
    engine.submit(req)
    assert isinstance(listener.end(), Done)
    return listener.text
