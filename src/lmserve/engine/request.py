"""What flows into the engine (requests) and back out of it (events).

The engine knows nothing about HTTP or asyncio: a request carries an `emit` callback,
called from the engine thread with each event (or a `hand_over` that takes a tick's
events of many requests in one call), and a `cancelled` flag the caller sets.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lmserve.engine.sampling import SamplingParams

_ids = itertools.count(1)


class ContextOverflowError(ValueError):
    """The prompt plus one generated token does not fit a slot's context."""

    def __init__(self, n_prompt: int, n_ctx: int) -> None:
        super().__init__(
            f"This model's context length is {n_ctx} tokens, but the request needs "
            f"{n_prompt + 1} ({n_prompt} in the prompt plus at least 1 to generate). "
            "Shorten the prompt or load the model with a larger context length."
        )
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx

    param = "messages"  # the request field to shorten


class EmbeddingInputTooLongError(ContextOverflowError):
    """An embedding input does not fit the embedding context."""

    param = "input"

    def __init__(self, n_input: int, n_ctx: int) -> None:
        ValueError.__init__(
            self,
            f"An input is {n_input} tokens long, more than this model's embedding context "
            f"of {n_ctx} tokens. Shorten or split the input, or load the model with a "
            "larger context length.")
        self.n_prompt = n_input
        self.n_ctx = n_ctx


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    piece: bytes
    logprob: float
    top: tuple[tuple[int, bytes, float], ...]  # the most likely tokens at this step


@dataclass(frozen=True, slots=True)
class Delta:
    """New output text (never a broken UTF-8 character, never part of a stop string),
    with the log-probabilities of the tokens behind it when they were asked for."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class PromptLogprobs:
    """How likely the model found each prompt token after the ones before it: one entry
    per prompt token from the second on (the first has nothing to be predicted from).
    Sent once, when the prompt is read, before any Delta."""

    logprobs: tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """How much of the prompt is read: sent after each chunk of it, to requests that ask
    (`report_progress`). `processed` counts the cached tokens too."""

    processed: int
    total: int
    cached: int


@dataclass(frozen=True, slots=True)
class Timings:
    queued_s: float
    ttft_s: float
    prompt_s: float
    generation_s: float
    n_prompt_processed: int

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.n_prompt_processed / self.prompt_s if self.prompt_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    timings: Timings
    stop_string: str | None = None  # which stop string ended it, if one did

    @property
    def tokens_per_s(self) -> float:
        t = self.timings.generation_s
        return self.completion_tokens / t if t > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Failed:
    error: Exception


Event = Delta | PromptLogprobs | PromptProgress | Done | Failed
# Delivers one tick's events of several requests at once: (request's emit, event) pairs.
HandOver = Callable[[list[tuple[Callable[[Event], None], Event]]], None]


@dataclass(slots=True)
class GenerationRequest:
    prompt: list[int]
    sampling: SamplingParams
    emit: Callable[[Event], None]
    max_tokens: int | None = None  # None: until end of generation or of the context
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None: none; N: the sampled token's and the top N
    prompt_logprobs: int | None = None  # the same for every prompt token (scoring)
    logprobs_of_end: bool = False  # list the end-of-generation token too (legacy completions)
    render_special: bool = False  # show control tokens (tool-call markers) in the text
    report_progress: bool = False  # a PromptProgress after each chunk of the prompt read
    tag: str = ""  # the caller's name for the request (its request id), for log lines
    hand_over: HandOver | None = None  # takes each tick's events in one call; else emit
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        # A plain attribute write: the engine reads it at the start of each tick.
        self.cancelled = True


@dataclass(slots=True)
class EmbeddingRequest:
    inputs: list[list[int]]
    emit: Callable[[list[list[float]] | Failed], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
