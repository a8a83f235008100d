"""Embeddings: a second context of the model's weights that pools what it reads.

Many inputs share one `llama_decode`, each as its own sequence, and llama.cpp pools each
sequence apart (`llama_get_embeddings_seq`). A request is served in slices, one decode
per turn of the engine loop, so that the engine decodes its generating slots between
slices and a cancelled request stops at the next one.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import llama_cpp as L
import numpy as np

from lmserve.engine.llama import LlamaModel
from lmserve.engine.request import EmbeddingInputTooLongError, EmbeddingRequest, Failed

log = logging.getLogger("lmserve.engine")

# Inputs one decode may pool; llama.cpp allows at least 64 sequences in a context.
MAX_SEQUENCES = 64
# Tokens of input per decode (one input longer than this goes alone). Each token of a
# batch attends to all of it, masked, so big batches waste work: 128 measured at least
# as fast as 256 or 512 (docs/benchmarks.md, "Embeddings"), and keeps streams moving.
SLICE_TOKENS = 128


@dataclass(slots=True)
class _Job:
    """A request part-way through: the vectors of its first inputs are done."""

    request: EmbeddingRequest
    vectors: list[list[float]] = field(default_factory=list)


class Embedder:
    """The embedding context of one model and the requests it is working through.

    `add` may be called from any thread; everything else runs on the engine thread."""

    def __init__(self, model: LlamaModel, *, max_input_tokens: int, n_threads: int) -> None:
        self.model = model
        self._max_input_tokens = max_input_tokens
        self._n_threads = n_threads
        self._ctx = None  # made at the first request: most models never embed
        self.n_ctx = 0
        self._batch = None
        self._queue: deque[EmbeddingRequest] = deque()
        self._job: _Job | None = None

    # -- any thread -------------------------------------------------------------------

    def add(self, request: EmbeddingRequest) -> None:
        self._queue.append(request)

    def pending(self) -> int:
        """Requests waiting or part-way through."""
        return len(self._queue) + (self._job is not None)

    # -- the engine thread ------------------------------------------------------------

    def run_slice(self, max_tokens: int = SLICE_TOKENS) -> None:
        """Pools the next inputs of the current request in one decode: as many as fit
        `max_tokens`, and always at least one whole input."""
        if self._job is not None and self._job.request.cancelled:
            self._job = None  # the client is gone: stop between slices
        job = self._job or self._next_job()
        if job is None:
            return
        inputs = job.request.inputs
        try:
            start = len(job.vectors)
            end = self._slice_end(inputs, start, max_tokens)
            job.vectors.extend(self._pool(inputs[start:end]))
        except Exception as exc:
            self._job = None
            _emit(job.request, Failed(exc))
            return
        if len(job.vectors) == len(inputs):
            self._job = None
            _emit(job.request, job.vectors)

    def fail_all(self, exc: Exception) -> None:
        requests = [self._job.request] if self._job is not None else []
        self._job = None
        while self._queue:
            requests.append(self._queue.popleft())
        for request in requests:
            _emit(request, Failed(exc))

    def set_threads(self, n: int) -> None:
        self._n_threads = n
        if self._ctx:
            L.llama_set_n_threads(self._ctx, n, n)

    def close(self) -> None:
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None

    # -- internals --------------------------------------------------------------------

    def _next_job(self) -> _Job | None:
        while self._queue:
            request = self._queue.popleft()
            if request.cancelled:
                continue
            try:
                self._open_context()
                if not all(request.inputs):
                    raise ValueError("An embedding input is empty.")
                longest = max(len(tokens) for tokens in request.inputs)
                if longest > self.n_ctx:
                    # Refused whole before any slice runs, as a too-long prompt is.
                    raise EmbeddingInputTooLongError(longest, self.n_ctx)
            except Exception as exc:
                _emit(request, Failed(exc))
                continue
            self._job = _Job(request)
            return self._job
        return None

    def _slice_end(self, inputs: list[list[int]], start: int, max_tokens: int) -> int:
        # Every input must sit whole in the batch: pooling reads one ubatch, and
        # non-causal models see only the tokens of their ubatch.
        end, n_tokens = start, 0
        while end < len(inputs) and end - start < MAX_SEQUENCES:
            n = len(inputs[end])
            if end > start and n_tokens + n > max_tokens:
                break
            n_tokens += n
            end += 1
        return end

    def _pool(self, inputs: list[list[int]]) -> list[list[float]]:
        """One decode of `inputs` as sequences 0..n-1; their L2-normalised vectors."""
        ctx, batch = self._ctx, self._batch
        mem = L.llama_get_memory(ctx)
        if mem:  # models without a KV cache (BERT) keep nothing between decodes
            L.llama_memory_clear(mem, False)  # what the cells hold is masked anyway
        n = 0
        for seq, tokens in enumerate(inputs):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True  # pooling reads every token's output
                n += 1
        batch.n_tokens = n
        ret = L.llama_decode(ctx, batch)
        if ret != 0:
            raise RuntimeError(f"llama_decode failed with status {ret}")
        n_embd = self.model.n_embd
        vectors = np.empty((len(inputs), n_embd), dtype=np.float32)
        for seq in range(len(inputs)):
            ptr = L.llama_get_embeddings_seq(ctx, seq)
            if not ptr:
                raise RuntimeError("the model produced no pooled embedding")
            vectors[seq] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (vectors / norms).tolist()

    def _open_context(self) -> None:
        if self._ctx is not None:
            return
        n_ctx = self._max_input_tokens
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        # The longest input must fit one ubatch; shorter ones are packed up to it.
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_seq_max = MAX_SEQUENCES
        cp.kv_unified = True  # the sequences of a batch share the cells of n_ctx
        # llama.cpp's CPU flash attention switches kernels at 64 query rows, so an input
        # would get another vector in a big batch than alone; plain attention does not.
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.embeddings = True
        # Embedding models say how they pool; language models get mean pooling.
        arch = self.model.architecture
        pooled = arch and self.model.meta(f"{arch}.pooling_type") is not None
        cp.pooling_type = (L.LLAMA_POOLING_TYPE_UNSPECIFIED if pooled
                           else L.LLAMA_POOLING_TYPE_MEAN)
        cp.n_threads = self._n_threads
        cp.n_threads_batch = self._n_threads
        cp.no_perf = True
        ctx = L.llama_init_from_model(self.model.ptr, cp)
        if not ctx:
            raise RuntimeError("could not create an embedding context")
        self._ctx = ctx
        # llama.cpp may round the context up; a batch never exceeds its ubatch.
        self.n_ctx = min(int(L.llama_n_ctx(ctx)), int(L.llama_n_ubatch(ctx)))
        self._batch = L.llama_batch_init(self.n_ctx, 0, 1)


def _emit(request: EmbeddingRequest, result: list[list[float]] | Failed) -> None:
    try:
        request.emit(result)
    except Exception:
        log.debug("embedding listener is gone", exc_info=True)
