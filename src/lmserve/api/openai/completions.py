"""POST /v1/completions: raw prompts, no chat template."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from lmserve.api.deps import get_manager
from lmserve.api.disconnect import ClientDisconnectedError, unless_disconnected
from lmserve.api.errors import APIError, as_api_error, error_body
from lmserve.api.openai.chat import native_extras
from lmserve.api.openai.generation import collect_all, finish_reason, merge
from lmserve.api.openai.protocol import CompletionRequest, new_id, now, usage
from lmserve.api.sse import DONE, sse_data, sse_response
from lmserve.engine import Delta, Done
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
    return await _create(body, request, manager, native=native)


async def _create(body: CompletionRequest, request: Request, manager: ModelManager,
                  *, native: bool) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    prompts = _prompts(body, model)
    streams: list[GenerationStream] = []
    try:
        for prompt in prompts:
            streams.append(model.generate(prompt, body.sampling_params(),
                                          max_tokens=body.token_limit(),
                                          stop=body.stop_list()))
    except Exception:
        for s in streams:
            s.cancel()
        raise
    head = {"id": new_id("cmpl"), "created": now(), "model": model.id}
    extras = (lambda done: native_extras(model, done)) if native else None
    echoed = [model.llama.detokenize(p) if body.echo else "" for p in prompts]
    if body.stream:
        return sse_response(_chunks(streams, head, echoed, body.include_usage, extras))
    try:
        results = await unless_disconnected(request, collect_all(streams))
    except ClientDisconnectedError:
        return Response(status_code=499)
    choices = [
        {"index": i, "text": echoed[i] + text, "logprobs": None,
         "finish_reason": finish_reason(done)}
        for i, (text, done) in enumerate(results)
    ]
    dones = [done for _, done in results]
    out = {**head, "object": "text_completion", "choices": choices, "usage": _usage(dones)}
    if extras:
        out.update(extras(dones[0]))
    return JSONResponse(out)


def _usage(dones: list[Done]) -> dict[str, Any]:
    return usage(sum(d.prompt_tokens for d in dones), sum(d.completion_tokens for d in dones),
                 sum(d.cached_tokens for d in dones))


async def _chunks(
    streams: list[GenerationStream], head: dict[str, Any], echoed: list[str],
    include_usage: bool, extras: Callable[[Done], dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    def chunk(i: int, text: str, finish: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            **head,
            "object": "text_completion",
            "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return sse_data(payload)

    for i, text in enumerate(echoed):
        if text:
            yield chunk(i, text)
    dones: list[Done] = []
    try:
        async for i, event in merge(streams):
            if isinstance(event, Delta):
                yield chunk(i, event.text)
            elif isinstance(event, Done):
                dones.append(event)
                yield chunk(i, "", finish_reason(event))
        if include_usage or extras:
            final = {**head, "object": "text_completion", "choices": [], "usage": _usage(dones)}
            if extras and dones:
                final.update(extras(dones[0]))
            yield sse_data(final)
    except Exception as exc:
        err = as_api_error(exc)
        yield sse_data(error_body(err.message, err.type, err.param, err.code))
    yield DONE
