"""A task: one request in flight on a slot, from admission to its last event."""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

from lmserve.engine.detokenizer import Detokenizer
from lmserve.engine.request import GenerationRequest, TokenLogprob
from lmserve.engine.sampling import free_sampler_chain

if TYPE_CHECKING:
    from lmserve.engine.slot import Slot

class TaskState(enum.Enum):
    PREFILL = "prefill"  # reading its prompt
    DECODE = "decode"  # generating


class Task:
    """The request, its sampler chain, detokenizer (with the stop matcher), the prompt
    tokens still to read, the logprobs held back with their text, and its timings."""

    def __init__(self, req: GenerationRequest) -> None:
        self.req = req
        self.state = TaskState.PREFILL
        self.chain = None  # its Sampler (llama.cpp chain and grammar), built once admitted
        self.detok = Detokenizer(req.stop)
        self.pending: list[int] = []  # prompt tokens not yet in the KV
        self.next_token: int | None = None  # sampled, to be decoded next tick
        self.logprobs: list[TokenLogprob] = []  # for tokens whose text is still held
        self.prompt_logprobs: list[TokenLogprob] = []  # when the request scores its prompt
        self.n_prompt = len(req.prompt)
        self.n_reused = 0  # prompt tokens found in the slot's KV or copied into it
        # Another slot that is reading (or holds) the first n_shared tokens of the prompt:
        # the task waits for them and copies their KV instead of reading them again.
        self.source: Slot | None = None
        self.source_task: Task | None = None  # the task that was running on the source
        self.n_shared = 0
        self.n_generated = 0
        self.t_admit = time.perf_counter()
        self.t_prompt_done = 0.0
        self.t_first = 0.0

    @property
    def scoring(self) -> bool:
        """Whether it keeps the logits of every prompt token (prompt logprobs)."""
        return self.req.prompt_logprobs is not None

    def release(self) -> None:
        free_sampler_chain(self.chain)
        self.chain = None
