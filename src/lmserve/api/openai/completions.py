"""POST /v1/completions: raw prompts, no chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError
from lmserve.api.generation import GenerationRun, finish_reason
from lmserve.api.openai.chat import native_extras
from lmserve.api.openai.chunks import ChunkTranslator, Extras, in_band_error
from lmserve.api.openai.protocol import CompletionRequest, new_id, now
from lmserve.api.serving import respond, stream_once_started, stream_response
from lmserve.engine import Delta, Done, PromptLogprobs
from lmserve.engine.request import ContextOverflowError, Event, TokenLogprob
from lmserve.models import GenerationStream, Model, ModelManager

router = APIRouter()


def _prompts(body: CompletionRequest, model: Model) -> list[list[int]]:
    """A prompt may be text, a list of texts, tokens, or a list of token lists."""
    p = body.prompt
    if isinstance(p, str):
        prompts = [model.text_prompt(p)]
    elif p and all(isinstance(x, int) for x in p):
        prompts = [list(p)]
    else:
        prompts = [model.text_prompt(x) if isinstance(x, str) else list(x) for x in p]
    if not prompts or not all(prompts):
        raise APIError(400, "The prompt is empty.", param="prompt")
    vocab = model.llama.n_vocab
    if any(t < 0 or t >= vocab for toks in prompts for t in toks):
        raise APIError(400, f"Prompt token ids must be in [0, {vocab}).", param="prompt")
    return prompts


@router.post("/v1/completions")
@router.post("/api/v1/completions")
async def create_completion(
    body: CompletionRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    # The native route answers the same, plus lmserve's `stats` and `model_info`.
    native = request.url.path.startswith("/api/")
    if body.stream:
        return await stream_once_started(
            request, _create(body, request, manager, native=native), in_band_error)
    return await _create(body, request, manager, native=native)


async def _create(body: CompletionRequest, request: Request, manager: ModelManager,
                  *, native: bool) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    prompts = _prompts(body, model)
    scoring = body.echo and body.logprobs is not None
    streams: list[GenerationStream] = []
    try:
        for prompt in prompts:
            streams.append(model.generate(
                prompt, body.sampling_params(), max_tokens=body.token_limit(),
                stop=body.stop_list(), logprobs=body.logprobs,
                prompt_logprobs=body.logprobs if scoring else None,
                # As in OpenAI's legacy API: a natural end shows up as its token.
                logprobs_of_end=True))
    except Exception as exc:
        for s in streams:
            s.cancel()
        if isinstance(exc, ContextOverflowError):
            raise APIError(400, str(exc), param="prompt",
                           code="context_length_exceeded") from exc
        raise
    run = GenerationRun(streams)
    translator = CompletionTranslator(
        {"id": new_id("cmpl"), "created": now(), "model": model.id},
        [_Choice(model, prompt, echo=body.echo, logprobs=body.logprobs is not None)
         for prompt in prompts],
        include_usage=body.include_usage,
        extras=(lambda done: native_extras(model, done)) if native else None)
    if body.stream:
        return stream_response(request, run, translator)
    return await respond(request, run, translator)


class _Choice:
    """One choice's text and OpenAI's legacy `logprobs` (tokens, token_logprobs,
    top_logprobs, text_offset), built up as its events arrive."""

    def __init__(self, model: Model, prompt: list[int], *, echo: bool, logprobs: bool) -> None:
        self.text = ""
        self.logprobs: dict[str, Any] | None = (
            {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            if logprobs else None)
        self._offset = 0
        self._echo = model.llama.detokenize(prompt) if echo else ""
        # A scored prompt is echoed with its logprobs, when they arrive; nothing predicts
        # its first token, which is listed without one.
        self._scored = echo and logprobs
        self._first = model.llama.token_bytes(prompt[0], special=True) if self._scored else b""

    def start(self) -> str:
        """Text to send before any event: the echoed prompt, unless it waits for scores."""
        if self._scored or not self._echo:
            return ""
        self.text += self._echo
        return self._echo

    def take(self, event: Delta | PromptLogprobs) -> tuple[str, dict[str, Any] | None]:
        """The text and logprobs an event adds to this choice."""
        if isinstance(event, PromptLogprobs):
            text, entries = self._echo, [self._first, *event.logprobs]
        else:
            text, entries = event.text, event.logprobs
        self.text += text
        return text, self._add(entries) if self.logprobs is not None else None

    def _add(self, entries: Sequence[TokenLogprob | bytes]) -> dict[str, Any]:
        part: dict[str, list] = {k: [] for k in self.logprobs}
        for e in entries:
            if isinstance(e, bytes):
                token, lp, top = _token_text(e), None, None
            else:
                token, lp = _token_text(e.piece), e.logprob
                top = {_token_text(p): v for _, p, v in e.top}
                top.setdefault(token, lp)  # OpenAI lists the chosen token as well
            part["tokens"].append(token)
            part["token_logprobs"].append(lp)
            part["top_logprobs"].append(top)
            part["text_offset"].append(self._offset)
            self._offset += len(token)
        for k, v in part.items():
            self.logprobs[k].extend(v)
        return part


def _token_text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


class CompletionTranslator(ChunkTranslator):
    """Engine events as text_completion chunks, and the text_completion they add up to."""

    chunk_object = "text_completion"
    shared_prompt = False  # each choice has a prompt of its own

    def __init__(self, head: dict[str, Any], choices: list[_Choice], *, include_usage: bool,
                 extras: Extras | None) -> None:
        super().__init__(head, len(choices), include_usage=include_usage, extras=extras)
        self._choices = choices

    def start(self) -> list[dict[str, Any]]:
        return [self._chunk(i, text, None) for i, c in enumerate(self._choices)
                if (text := c.start())]

    def feed(self, index: int, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, Done):
            self.dones[index] = event
            return [self._chunk(index, "", None, finish_reason(event))]
        return [self._chunk(index, *self._choices[index].take(event))]

    def result(self) -> dict[str, Any]:
        return {**self.head, "object": "text_completion", "usage": self.usage(),
                "choices": [{"index": i, "text": c.text, "logprobs": c.logprobs,
                             "finish_reason": finish_reason(self.dones[i])}
                            for i, c in enumerate(self._choices)], **self.extra()}

    def _chunk(self, i: int, text: str, logprobs: dict[str, Any] | None,
               finish: str | None = None) -> dict[str, Any]:
        return self.chunk({"index": i, "text": text, "logprobs": logprobs,
                           "finish_reason": finish})
