"""A loaded model: the llama.cpp weights, their engine, and their chat template."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmserve import defaults
from lmserve.engine import (
    Done,
    EmbeddingRequest,
    Engine,
    Failed,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
)
from lmserve.engine.request import Delta, Event
from lmserve.metrics import Metrics
from lmserve.models.chat_template import ChatTemplate
from lmserve.models.load_options import gpu_layers
from lmserve.models.memory import layer_count
from lmserve.request_context import current_record, current_request_id

log = logging.getLogger("lmserve.models")


class GenerationStream:
    """The asyncio side of one request: events arrive through a per-request queue.

    As they pass, it records the request's tokens and latencies (metrics, the request's
    log line) and, when the model logs prompts, the prompt and output text."""

    def __init__(self, model: Model, req: GenerationRequest, queue: asyncio.Queue) -> None:
        self._model = model
        self._engine = model.engine
        self._queue = queue
        self.request = req
        self._record = current_record()
        self._done = False
        if self._record is not None:
            engine = self._engine
            self._record.engine_state = lambda: engine.request_state(req.id)
            self._record.prompt_size += len(req.prompt)

    async def __aiter__(self) -> AsyncIterator[Event]:
        last_piece: float | None = None
        output: list[str] = []
        try:
            while True:
                event = await self._queue.get()
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Delta) and event.text:
                    now = time.perf_counter()
                    self._note_piece(now)
                    if last_piece is not None and self._model.metrics:
                        self._model.metrics.inter_token_latency.labels(
                            self._model.id).observe(now - last_piece)
                    last_piece = now
                    if self._model.log_prompts:
                        output.append(event.text)
                if isinstance(event, Done):
                    self._finished(event, "".join(output))
                yield event
                if isinstance(event, Done):
                    return
        finally:
            self.cancel()

    def _note_piece(self, now: float) -> None:
        if (record := self._record) is not None:
            record.output_pieces += 1
            if record.ttft_s is None:
                record.ttft_s = now - self.request.submitted_at

    def _finished(self, done: Done, output: str) -> None:
        self._done = True
        record = self._record
        if record is not None:
            record.add_usage(done.prompt_tokens, done.completion_tokens, done.cached_tokens)
            if done.completion_tokens:
                record.ttft_s = done.timings.ttft_s
            record.tokens_per_s = done.tokens_per_s
            record.finish_reason = done.finish_reason
        if self._model.metrics:
            self._model.metrics.observe_finished(
                self._model.id, done.prompt_tokens, done.completion_tokens,
                done.cached_tokens, done.timings.ttft_s if done.completion_tokens else None)
        if self._model.log_prompts:
            log.info("prompt %r; output %r", self._model.llama.detokenize(self.request.prompt),
                     output)

    def cancel(self) -> None:
        if not self._done and self._record is not None:  # closed before the end
            self._record.finish_reason = "cancelled"
        if not self.request.cancelled:
            self.request.cancel()
            self._engine.wake()


@dataclass(frozen=True)
class LoadConfig:
    """How an instance is loaded; `ttl` is idle seconds before unloading (None: never).

    The llama.cpp options are those of models/load_options.py: `gpu` is 'off', 'max' or
    the fraction of the layers offloaded (None: 'max' where the runtime has a GPU, else
    'off'), the RoPE frequencies None for the model's own."""

    context_length: int = defaults.CONTEXT_LENGTH
    parallel: int = defaults.PARALLEL
    max_queue: int = defaults.MAX_QUEUE
    threads: int | None = None
    share_cpu: bool = True
    ttl: float | None = None
    gpu: str | float | None = None
    flash_attention: str = defaults.FLASH_ATTENTION
    kv_cache_type_k: str = defaults.KV_CACHE_TYPE
    kv_cache_type_v: str = defaults.KV_CACHE_TYPE
    eval_batch_size: int = defaults.BATCH_SIZE
    prefill_budget: int = defaults.PREFILL_BUDGET
    use_mmap: bool = True
    keep_in_memory: bool = False
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"context_length": self.context_length, "parallel": self.parallel,
                "ttl": self.ttl, "max_queue": self.max_queue,
                "gpu": self.gpu, "flash_attention": self.flash_attention,
                "kv_cache_type_k": self.kv_cache_type_k,
                "kv_cache_type_v": self.kv_cache_type_v,
                "eval_batch_size": self.eval_batch_size,
                "prefill_budget": self.prefill_budget, "use_mmap": self.use_mmap,
                "keep_in_memory": self.keep_in_memory,
                "rope_freq_base": self.rope_freq_base,
                "rope_freq_scale": self.rope_freq_scale}


class Model:
    """One loaded instance of a model file, known by its identifier."""

    def __init__(self, model_id: str, path: Path, config: LoadConfig, *,
                 key: str | None = None, entry: Any = None, metrics: Metrics | None = None,
                 log_prompts: bool = False,
                 on_load_progress: Callable[[float], None] | None = None) -> None:
        self.id = model_id
        self.metrics = metrics
        self.log_prompts = log_prompts  # prompt and output text go to the log
        self.key = key or model_id  # the library key it was loaded from
        self.entry = entry  # its library entry (metadata), if it came from the library
        self.path = path
        self.config = config
        self.created = int(time.time())
        t0 = time.perf_counter()
        self.gpu_layers = gpu_layers(config.gpu, layer_count(path))
        self.llama = LlamaModel(path, n_gpu_layers=self.gpu_layers, use_mmap=config.use_mmap,
                                mlock=config.keep_in_memory, on_progress=on_load_progress)
        try:
            self.engine = Engine(
                self.llama,
                n_slots=config.parallel,
                n_ctx_slot=config.context_length,
                n_batch=config.eval_batch_size,
                prefill_budget=config.prefill_budget,
                max_queue=config.max_queue,
                n_threads=config.threads,
                share_cpu=config.share_cpu,
                name=model_id,
                flash_attention=config.flash_attention,
                kv_cache_types=(config.kv_cache_type_k, config.kv_cache_type_v),
                rope_freq_base=config.rope_freq_base or 0.0,
                rope_freq_scale=config.rope_freq_scale or 0.0,
            )
        except Exception:
            self.llama.close()
            raise
        self.template = ChatTemplate(
            self.llama.chat_template,
            bos_token=self.llama.token_text(self.llama.bos) if self.llama.bos >= 0 else "",
            eos_token=self.llama.token_text(self.llama.eos) if self.llama.eos >= 0 else "",
        )
        self._hand_over: LoopHandOver | None = None
        self.engine.start()
        self.load_time_s = time.perf_counter() - t0
        self.last_used = time.monotonic()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @property
    def is_embedding(self) -> bool:
        """Embedding models pool their output; they cannot generate text."""
        if self.entry is not None:
            return self.entry.type == "embedding"
        arch = self.llama.architecture
        return bool(arch and self.llama.meta(f"{arch}.pooling_type") is not None)

    def check_can_generate(self) -> None:
        if self.is_embedding:
            raise ValueError(f"'{self.id}' is an embedding model: use /v1/embeddings with it.")

    @property
    def failure(self) -> Exception | None:
        """The error that stopped this instance's engine: it serves nothing until reloaded."""
        return self.engine.failure

    @property
    def busy(self) -> bool:
        return self.engine.pending_work() > 0

    @property
    def context_length(self) -> int:
        return self.engine.n_ctx_slot

    # -- prompts ----------------------------------------------------------------------

    def tokenize_rendered(self, text: str) -> list[int]:
        """Tokens of a prompt rendered by the chat template."""
        # Templates that write the BOS token themselves must not get a second one.
        bos = self.template.bos_token
        add_bos = not (bos and text.startswith(bos))
        return self.llama.tokenize(text, add_special=add_bos, parse_special=True)

    def text_prompt(self, text: str) -> list[int]:
        return self.llama.tokenize(text, add_special=True, parse_special=True)

    # -- generation and embeddings ------------------------------------------------------

    def generate(
        self,
        prompt: list[int],
        sampling: SamplingParams,
        *,
        max_tokens: int | None,
        stop: list[str],
        logprobs: int | None = None,
        prompt_logprobs: int | None = None,
        logprobs_of_end: bool = False,
        render_special: bool = False,
        report_progress: bool = False,
    ) -> GenerationStream:
        """Submits the request now: queue and context errors raise here, before streaming."""
        self.check_can_generate()
        loop = asyncio.get_running_loop()
        if self._hand_over is None or self._hand_over.loop is not loop:
            self._hand_over = LoopHandOver(loop)
        queue: asyncio.Queue = asyncio.Queue()
        req = GenerationRequest(prompt, sampling, queue.put_nowait, max_tokens=max_tokens,
                                stop=stop, logprobs=logprobs, prompt_logprobs=prompt_logprobs,
                                logprobs_of_end=logprobs_of_end, render_special=render_special,
                                report_progress=report_progress, tag=current_request_id(),
                                hand_over=self._hand_over)
        self.engine.submit(req)
        return GenerationStream(self, req, queue)

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def emit(result: list[list[float]] | Failed) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        job = EmbeddingRequest(inputs, emit)
        self.engine.submit_embedding(job)
        try:
            vectors = await future
        finally:
            job.cancel()
        tokens = sum(len(tokens) for tokens in inputs)
        if (record := current_record()) is not None:
            record.add_usage(tokens)
        if self.metrics:
            self.metrics.prompt_tokens.labels(self.id).inc(tokens)
        return vectors

    def close(self) -> None:
        self.engine.stop()
        self.llama.close()


class LoopHandOver:
    """Passes each engine tick's events for the streams of one event loop in a single
    wake-up of that loop (not one per token per stream)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, events: list[tuple[Callable[[Event], None], Event]]) -> None:
        self.loop.call_soon_threadsafe(_deliver, events)


def _deliver(events: list[tuple[Callable[[Event], None], Event]]) -> None:
    for emit, event in events:
        emit(event)


def _settle(future: asyncio.Future, result: list[list[float]] | Failed) -> None:
    if future.done():
        return
    if isinstance(result, Failed):
        future.set_exception(result.error)
    else:
        future.set_result(result)
