"""The engine: one thread owns a llama.cpp context and serves many requests at once.

Named as llama.cpp's server names things: a `Slot` is a KV sequence, a `Task` the
request running on it. Each tick admits queued requests into free slots (reusing the
longest cached prefix), then fills one batch (one token per decoding slot plus prompt
chunks of prefilling slots), decodes it, advances the slots and samples a token for each
slot whose logits are ready, streaming the text out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import llama_cpp as L
import numpy as np

from lmserve import defaults
from lmserve.engine.cpu_share import CpuShare
from lmserve.engine.embedding import SLICE_TOKENS, Embedder
from lmserve.engine.llama import FLASH_ATTENTION_TYPES, LlamaModel, ModelLoadError, ggml_type
from lmserve.engine.logprobs import log_softmax_at
from lmserve.engine.outbox import Outbox
from lmserve.engine.request import (
    ContextOverflowError,
    Delta,
    Done,
    EmbeddingRequest,
    Event,
    Failed,
    GenerationRequest,
    PromptLogprobs,
    PromptProgress,
    Timings,
    TokenLogprob,
)
from lmserve.engine.sampling import build_sampler_chain
from lmserve.engine.slot import Slot
from lmserve.engine.task import Task, TaskState

log = logging.getLogger("lmserve.engine")

# Prompt tokens a scoring request puts in one batch (each keeps a vocabulary of logits).
_SCORE_CHUNK = 64
# Prompt tokens another slot must share beyond a slot's own cache for a copy of its KV
# to beat reading them (a copy moves a whole KV stream: about as long as reading 5 to 15
# prompt tokens, docs/benchmarks.md).
_MIN_SHARED = 32
IDLE = "idle"  # a slot's state with no task (else the task's: "prefill" or "decode")


class QueueFullError(RuntimeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"All slots are busy and {limit} requests are already waiting.")
        self.limit = limit


class EngineStoppedError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class SlotStatus:
    id: int
    state: str
    n_cached: int
    request_id: int | None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    slots: list[SlotStatus]
    queued: int
    n_ctx_slot: int

    @property
    def busy(self) -> int:
        return sum(s.state != IDLE for s in self.slots)


@dataclass(slots=True)
class BatchShare:
    """A slot's tokens in this tick's batch."""

    slot: Slot
    first: int  # batch index of its first token
    n_tokens: int
    i_logits: int  # batch index of the logits to sample from, or -1 (prompt not read yet)


class Engine:
    def __init__(
        self,
        model: LlamaModel,
        *,
        n_slots: int = defaults.PARALLEL,
        n_ctx_slot: int = defaults.CONTEXT_LENGTH,
        n_batch: int = defaults.BATCH_SIZE,
        prefill_budget: int = defaults.PREFILL_BUDGET,
        n_threads: int | None = None,
        max_queue: int = defaults.MAX_QUEUE,
        share_cpu: bool = True,
        name: str = "model",
        flash_attention: str = "auto",
        kv_cache_types: tuple[str, str] = ("f16", "f16"),
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
    ) -> None:
        """kv_cache_types: the K and V cache element types ("f16", "q8_0"...);
        rope_freq_base and rope_freq_scale: 0 keeps the model's own."""
        self.model = model
        self.name = name
        self.max_queue = max_queue
        self.n_batch = n_batch
        # Prompt tokens read per tick beside running streams: their gap between tokens.
        self.prefill_budget = prefill_budget
        self.n_threads = n_threads or os.cpu_count() or 1
        # Fewer threads while other processes keep the cores busy (see cpu_share).
        self._cpu_share = CpuShare(self.n_threads) if share_cpu else None
        self.threads_in_use = self.n_threads
        cp = L.llama_context_default_params()
        cp.n_ctx = n_slots * n_ctx_slot
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_slots
        cp.kv_unified = False  # one KV stream per slot: slots never compete for room
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads
        cp.no_perf = True
        cp.flash_attn_type = FLASH_ATTENTION_TYPES[flash_attention]
        cp.type_k, cp.type_v = (ggml_type(t) for t in kv_cache_types)
        cp.rope_freq_base = rope_freq_base
        cp.rope_freq_scale = rope_freq_scale
        self._ctx = L.llama_init_from_model(model.ptr, cp)
        if not self._ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {cp.n_ctx} tokens with flash "
                f"attention {flash_attention} and a {'/'.join(kv_cache_types)} KV cache")
        self._mem = L.llama_get_memory(self._ctx)
        self.n_ctx_slot = int(L.llama_n_ctx_seq(self._ctx))
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        self._embedder = Embedder(
            model, max_input_tokens=min(self.n_ctx_slot, max(model.n_ctx_train, 512)),
            n_threads=self.n_threads)
        self.slots = [Slot(i) for i in range(n_slots)]
        self._prefill_cap = n_batch
        self._waiting: deque[GenerationRequest] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._outbox = Outbox()
        self.failure: Exception | None = None  # what ended the engine thread, if it died
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)

    # -- the caller's side (any thread) -------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, req: GenerationRequest) -> None:
        if not req.prompt:
            raise ValueError("The prompt is empty.")
        if len(req.prompt) + 1 > self.n_ctx_slot:
            raise ContextOverflowError(len(req.prompt), self.n_ctx_slot)
        n_vocab = self.model.n_vocab
        if any(not 0 <= t < n_vocab for t, _ in req.sampling.logit_bias):
            raise ValueError(f"logit_bias token ids must be in [0, {n_vocab}).")
        with self._cv:
            self._check_running()
            free = sum(s.task is None for s in self.slots)
            if len(self._waiting) >= free + self.max_queue:
                raise QueueFullError(self.max_queue)
            self._waiting.append(req)
            self._cv.notify()

    def submit_embedding(self, job: EmbeddingRequest) -> None:
        with self._cv:
            self._check_running()
            self._embedder.add(job)
            self._cv.notify()

    def _check_running(self) -> None:
        if self.failure is not None:
            raise EngineStoppedError(
                f"it stopped after an internal error ({self.failure}); load it again")
        if self._stopping:
            raise EngineStoppedError("the model is being unloaded")

    def wake(self) -> None:
        """Prompt the engine to notice a cancellation without waiting for a tick."""
        with self._cv:
            self._cv.notify()

    def status(self) -> EngineStatus:
        slots = []
        for s in self.slots:
            task = s.task  # read once: the engine thread may end it meanwhile
            state = task.state.value if task is not None else IDLE
            slots.append(SlotStatus(s.id, state, len(s.cache),
                                    task.req.id if task is not None else None))
        return EngineStatus(slots=slots, queued=len(self._waiting), n_ctx_slot=self.n_ctx_slot)

    def request_state(self, request_id: int) -> str:
        """Where a submitted request is: "queued" for a slot, "prefilling" (reading its
        prompt), "generating", or "finished". Read without the lock, as status() is."""
        for slot in self.slots:
            task = slot.task
            if task is not None and task.req.id == request_id:
                return "prefilling" if task.state is TaskState.PREFILL else "generating"
        waiting = list(self._waiting)  # one C-level copy: safe against the engine thread
        return "queued" if any(req.id == request_id for req in waiting) else "finished"

    @property
    def shares_cpu(self) -> bool:
        """Whether the thread count follows the load of other processes."""
        return self._cpu_share is not None

    def pending_work(self) -> int:
        """Requests admitted, waiting or embedding: zero means the model is idle."""
        busy = sum(s.task is not None for s in self.slots)
        return busy + len(self._waiting) + self._embedder.pending()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._free()

    # -- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._wait_for_work():
                self._drop_cancelled()
                self._admit()
                if self._embedder.pending():
                    self._fit_threads()
                    # One slice per turn, the generating slots decoding between slices;
                    # beside them, a slice is no bigger than a chunk of prompt.
                    self._embedder.run_slice(min(self.prefill_budget, SLICE_TOKENS)
                                             if self._busy_slots() else SLICE_TOKENS)
                if self._busy_slots():
                    self._tick()
                self._outbox.flush()
        except Exception as exc:  # a bug in the loop: fail everyone rather than hang them
            log.exception("engine %s crashed", self.name)
            with self._cv:  # from now on submit() refuses at once
                self.failure = exc
            self._fail_all(exc)
            return
        self._fail_all(EngineStoppedError("the server is shutting down"))

    def _busy_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.task is not None]

    def _wait_for_work(self) -> bool:
        with self._cv:
            idle = not self._has_work()
            while not self._stopping and not self._has_work():
                self._cv.wait()
        if idle and self._cpu_share is not None:
            self._cpu_share.restart()
        return not self._stopping

    def _has_work(self) -> bool:
        return bool(self._waiting or self._embedder.pending() or self._busy_slots())

    def _drop_cancelled(self) -> None:
        for slot in self._busy_slots():
            if slot.task.req.cancelled:
                self._finish(slot, "cancelled")
        with self._cv:  # submit() appends meanwhile
            if any(r.cancelled for r in self._waiting):
                self._waiting = deque(r for r in self._waiting if not r.cancelled)

    def _admit(self) -> None:
        while True:
            free = [s for s in self.slots if s.task is None]
            if not free:
                return
            with self._cv:
                if not self._waiting:
                    return
                req = self._waiting.popleft()
                slot = self._best_slot(free, req.prompt)
                # Claimed while the lock is held: submit() must not count it free while
                # the request is set up, or the queue would admit one too many.
                slot.task = Task(req)
            try:
                self._start(slot)
            except Exception as exc:  # e.g. a grammar llama.cpp refuses
                self._emit(req, Failed(exc))
                self._finish(slot, "cancelled")

    def _best_slot(self, free: list[Slot], prompt: list[int]) -> Slot:
        # Longest cached prefix wins; among equals, the least recently used slot, so
        # that recently used prefixes survive longer.
        return max(free, key=lambda s: (_common_prefix(s.cache, prompt), -s.last_used))

    def _start(self, slot: Slot) -> None:
        """Keeps the slot's KV that the prompt shares, so only the rest is read; or, when
        another slot reads or holds a longer part of it, waits to copy that slot's KV."""
        task = slot.task
        prompt = task.req.prompt
        own = min(_common_prefix(slot.cache, prompt), len(prompt) - 1)  # one token to eval
        if task.scoring:
            own = 0  # cached tokens have no logits left to score them with
        else:
            source, shared = self._prefix_source(slot, prompt)
            if source is not None and shared >= own + _MIN_SHARED:
                task.source, task.source_task, task.n_shared = source, source.task, shared
        if task.source is None:
            self._keep_prefix(slot, own)
        task.chain = build_sampler_chain(task.req.sampling, self.model, prompt)

    def _keep_prefix(self, slot: Slot, keep: int) -> None:
        """Drops the slot's KV after `keep` tokens; the task reads the rest of its prompt."""
        task = slot.task
        if keep < len(slot.cache):
            if not L.llama_memory_seq_rm(self._mem, slot.id, keep, -1):
                # Some memory types (recurrent, sliding window) cannot drop a tail.
                L.llama_memory_seq_rm(self._mem, slot.id, -1, -1)
                keep = 0
            del slot.cache[keep:]
        task.n_reused = keep
        task.pending = task.req.prompt[keep:]

    def _prefix_source(self, slot: Slot, prompt: list[int]) -> tuple[Slot | None, int]:
        """The busy slot that reads or holds the longest prefix of `prompt`, and its length
        (one token short of the whole prompt at most: it must read one itself)."""
        best, best_len = None, 0
        for other in self._busy_slots():
            task = other.task
            if other is slot or task.source is not None:
                continue
            planned = other.cache + task.pending if task.state is TaskState.PREFILL \
                else other.cache
            shared = min(_common_prefix(planned, prompt), len(prompt) - 1)
            if shared > best_len:
                best, best_len = other, shared
        return best, best_len

    def _copy_shared_prefixes(self) -> None:
        """Tasks waiting for another slot's prefix copy its KV once it is read."""
        for slot in self._busy_slots():
            task = slot.task
            source = task.source
            if source is None:
                continue
            prompt = task.req.prompt
            if _common_prefix(source.cache, prompt) >= task.n_shared:
                task.source = task.source_task = None
                L.llama_memory_seq_rm(self._mem, slot.id, -1, -1)
                # Across KV streams llama.cpp copies whole sequences: copy, then cut.
                L.llama_memory_seq_cp(self._mem, source.id, slot.id, -1, -1)
                if L.llama_memory_seq_rm(self._mem, slot.id, task.n_shared, -1):
                    slot.cache = prompt[:task.n_shared]
                else:  # a memory type that cannot drop a tail: read it all
                    L.llama_memory_seq_rm(self._mem, slot.id, -1, -1)
                    slot.cache = []
                task.n_reused = len(slot.cache)
                task.pending = prompt[len(slot.cache):]
            elif source.task is not task.source_task:  # it ended before reading that far
                task.source = task.source_task = None
                self._keep_prefix(slot, min(_common_prefix(slot.cache, prompt),
                                            len(prompt) - 1))

    # -- one tick: fill the batch, decode, advance the slots, sample ------------------------

    def _tick(self) -> None:
        self._copy_shared_prefixes()
        shares = self._fill_batch()
        if not shares:  # every busy slot waits for another's prefix
            return
        if not self._decode(shares):
            return
        self._advance(shares)
        self._sample(shares)

    def _fill_batch(self) -> list[BatchShare]:
        """One token per decoding slot, then prompt chunks in admission order (so the
        oldest prompt is read first): up to n_batch tokens, or up to the prefill budget
        while any slot is decoding."""
        batch = self._batch
        shares: list[BatchShare] = []
        n = 0

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
            n += 1

        busy = self._busy_slots()
        for s in busy:
            if s.task.state is TaskState.DECODE:
                shares.append(BatchShare(s, n, 1, n))
                add(s.task.next_token, len(s.cache), s.id, True)
        budget = min(self.n_batch - n, self._prefill_cap)
        if n:  # streams are decoding: read prompts in chunks that keep them flowing
            budget = min(budget, self.prefill_budget)
        reading = (s for s in busy if s.task.state is TaskState.PREFILL and s.task.source is None)
        for s in sorted(reading, key=lambda s: s.task.t_admit):
            if budget <= 0:
                break
            task = s.task
            # Scoring keeps every position's logits: smaller chunks bound that buffer.
            chunk = task.pending[:min(budget, _SCORE_CHUNK) if task.scoring else budget]
            last = len(chunk) == len(task.pending)
            first, base = n, len(s.cache)
            for j, tok in enumerate(chunk):
                add(tok, base + j, s.id, task.scoring or (last and j == len(chunk) - 1))
            shares.append(BatchShare(s, first, len(chunk), n - 1 if last else -1))
            budget -= len(chunk)
        batch.n_tokens = n
        return shares

    def _decode(self, shares: list[BatchShare]) -> bool:
        self._fit_threads()
        ret = L.llama_decode(self._ctx, self._batch)
        if ret == 0:
            self._prefill_cap = self.n_batch
            return True
        reading = [sh for sh in shares if sh.slot.task.state is TaskState.PREFILL]
        n_prefill = sum(sh.n_tokens for sh in reading)
        if ret == 1 and n_prefill > 1:
            # No KV room for this batch: retry next tick with a smaller prefill share.
            self._prefill_cap = max(1, n_prefill // 2)
            return False
        self._prefill_cap = self.n_batch
        if ret == 1:
            # Not even one more prompt token fits: fail those prompts; the decoding slots
            # (nothing of this batch was decoded) retry their token next tick.
            self._fail_batch(reading or shares, RuntimeError(
                "There is no room left in the model's context for this request "
                "(llama_decode returned 1)."))
        else:
            self._fail_batch(shares, RuntimeError(f"llama_decode failed with status {ret}"))
        return False

    def _advance(self, shares: list[BatchShare]) -> None:
        """The batch is in the KV: the slots' caches grow, prompts that are read end."""
        now = time.perf_counter()
        for share in shares:
            slot, task = share.slot, share.slot.task
            if task.state is TaskState.DECODE:
                slot.cache.append(task.next_token)
                continue
            if task.scoring:
                self._score_prompt_chunk(share)
            slot.cache.extend(task.pending[:share.n_tokens])
            del task.pending[:share.n_tokens]
            if task.req.report_progress:
                self._emit(task.req, PromptProgress(task.n_prompt - len(task.pending),
                                                    task.n_prompt, task.n_reused))
            if not task.pending:
                task.state = TaskState.DECODE
                task.t_prompt_done = now
                if task.scoring:
                    self._emit(task.req, PromptLogprobs(tuple(task.prompt_logprobs)))

    def _sample(self, shares: list[BatchShare]) -> None:
        for share in shares:
            if share.i_logits < 0:
                continue
            slot = share.slot
            if slot.task.req.max_tokens == 0:  # scoring only: nothing to generate
                self._finish(slot, "length")
                continue
            token = slot.task.chain.sample(self._ctx, share.i_logits)
            self._on_token(slot, token, share.i_logits)

    def _score_prompt_chunk(self, share: BatchShare) -> None:
        """Log-probabilities of the prompt tokens that this tick's chunk predicts."""
        slot, task = share.slot, share.slot.task
        prompt, top_n = task.req.prompt, task.req.prompt_logprobs
        base = len(slot.cache)
        for j in range(share.n_tokens):
            target = base + j + 1
            if target < len(prompt):
                token = prompt[target]
                task.prompt_logprobs.append(self._logprob(
                    share.first + j, token, self.model.token_bytes(token, special=True),
                    top_n))

    def _on_token(self, slot: Slot, token: int, i_batch: int) -> None:
        task = slot.task
        if not task.t_first:
            task.t_first = time.perf_counter()
        req = task.req
        if self.model.is_eog(token):
            if req.logprobs is not None and req.logprobs_of_end:
                piece = self.model.token_bytes(token, special=True)
                task.logprobs.append(self._logprob(i_batch, token, piece, req.logprobs))
            self._finish(slot, "stop")
            return
        task.n_generated += 1
        piece = self.model.token_bytes(token, special=req.render_special)
        if req.logprobs is not None:
            task.logprobs.append(self._logprob(i_batch, token, piece, req.logprobs))
        text, hit_stop = task.detok.push(piece)
        if text:
            self._emit(req, Delta(text, tuple(task.logprobs)))
            task.logprobs.clear()
        if hit_stop:
            self._finish(slot, "stop", flush=False)
        elif req.max_tokens is not None and task.n_generated >= req.max_tokens:
            self._finish(slot, "length")
        elif len(slot.cache) + 1 >= self.n_ctx_slot:  # prompt + output fill the context
            self._finish(slot, "length")
        else:
            task.next_token = token

    def _finish(self, slot: Slot, reason: str, *, flush: bool = True) -> None:
        task = slot.task
        req = task.req
        now = time.perf_counter()
        if flush and reason != "cancelled":
            tail = task.detok.flush()
            if tail or task.logprobs:
                self._emit(req, Delta(tail, tuple(task.logprobs)))
        t_prompt_done = task.t_prompt_done if task.state is TaskState.DECODE else now
        timings = Timings(
            queued_s=task.t_admit - req.submitted_at,
            ttft_s=(task.t_first or now) - req.submitted_at,
            prompt_s=t_prompt_done - task.t_admit,
            generation_s=now - t_prompt_done,
            n_prompt_processed=task.n_prompt - task.n_reused,
        )
        done = Done(reason, task.n_prompt, task.n_generated, task.n_reused, timings,
                    task.detok.matched_stop)
        self._emit(req, done)
        log.info(
            "%s request %d slot %d %s: prompt %d tok (%d cached) %.1f tok/s, "
            "generated %d tok %.1f tok/s, ttft %.3f s, queued %.3f s",
            self.name, req.id, slot.id, reason, task.n_prompt, task.n_reused,
            timings.prompt_tokens_per_s, task.n_generated, done.tokens_per_s,
            timings.ttft_s, timings.queued_s, extra={"request_id": req.tag},
        )
        task.release()
        slot.task = None
        slot.last_used = now

    def _logprob(self, i_batch: int, token: int, piece: bytes, top_n: int) -> TokenLogprob:
        """Log-probabilities from the model's raw distribution at this step."""
        ptr = L.llama_get_logits_ith(self._ctx, i_batch)
        logits = np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))
        logprob, best = log_softmax_at(logits, token, top_n)
        top = tuple((t, self.model.token_bytes(t, special=True), p) for t, p in best)
        return TokenLogprob(token, piece, logprob, top)

    def _emit(self, req: GenerationRequest, event: Event) -> None:
        self._outbox.put(req, event)

    def _fail_batch(self, shares: list[BatchShare], err: Exception) -> None:
        """Fails the requests in a batch that did not decode; every other slot's KV and
        the KV these slots held before this batch stay for later prompts to reuse."""
        log.error("%s: %s; failing %d requests", self.name, err, len(shares))
        for share in shares:
            slot = share.slot
            L.llama_memory_seq_rm(self._mem, slot.id, len(slot.cache), -1)
            self._emit(slot.task.req, Failed(err))
            self._finish(slot, "cancelled")

    def _fail_all(self, exc: Exception) -> None:
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for req in waiting:
            self._emit(req, Failed(exc))
        self._embedder.fail_all(exc)
        for s in self._busy_slots():
            self._emit(s.task.req, Failed(exc))
            self._finish(s, "cancelled")
        self._outbox.flush()

    def _fit_threads(self) -> None:
        if self._cpu_share is None:
            return
        n = self._cpu_share.update()
        if n == self.threads_in_use:
            return
        log.info("model %s: decoding with %d of %d threads, to fit the cores other "
                 "processes leave free", self.name, n, self.n_threads)
        self.threads_in_use = n
        L.llama_set_n_threads(self._ctx, n, n)
        self._embedder.set_threads(n)

    # -- teardown -------------------------------------------------------------------------

    def _free(self) -> None:
        for s in self.slots:
            if s.task is not None:
                s.task.release()
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        self._embedder.close()
        if self._ctx:
            L.llama_free(self._ctx)
        self._ctx = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    return len(os.path.commonprefix([a, b]))

