"""POST /v1/chat/completions"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from lmserve.api.chat_session import (
    ChatChoice,
    ChatRun,
    Finish,
    LogprobsDelta,
    logprobs_object,
    start_chat,
)
from lmserve.api.deps import get_manager
from lmserve.api.disconnect import ClientDisconnectedError, unless_disconnected
from lmserve.api.errors import as_api_error, error_body
from lmserve.api.native.models import model_info
from lmserve.api.openai.protocol import ChatCompletionRequest, new_id, now, usage
from lmserve.api.sse import DONE, sse_data, sse_response
from lmserve.engine import Done
from lmserve.models import Model, ModelManager
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart

router = APIRouter()


@router.post("/v1/chat/completions")
@router.post("/api/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    # The native route answers the same, plus lmserve's `stats` and `model_info`.
    native = request.url.path.startswith("/api/")
    return await _create(body, request, manager, native=native)


async def _create(body: ChatCompletionRequest, request: Request, manager: ModelManager,
                  *, native: bool) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    run = start_chat(model, body.chat_spec())
    head = {"id": new_id("chatcmpl"), "created": now(), "model": model.id}
    extras = (lambda done: native_extras(model, done)) if native else None
    legacy = body.legacy_functions
    if body.stream:
        return sse_response(_chunks(run, head, body.include_usage, extras, legacy))
    try:
        choices = await unless_disconnected(request, run.collect())
    except ClientDisconnectedError:
        return Response(status_code=499)
    out = {
        **head,
        "object": "chat.completion",
        "choices": [_choice(c, body.logprobs, legacy) for c in choices],
        "usage": choices_usage(choices),
    }
    if extras:
        out.update(extras(choices[0].done))
    return JSONResponse(out)


def native_extras(model: Model, done: Done) -> dict[str, Any]:
    """lmserve's per-response performance stats and model facts."""
    t = done.timings
    return {
        "stats": {
            "tokens_per_second": round(done.tokens_per_s, 2),
            "time_to_first_token": round(t.ttft_s, 4),
            "generation_time": round(t.generation_s, 4),
            "prompt_tokens_per_second": round(t.prompt_tokens_per_s, 2),
            "stop_reason": done.finish_reason,
        },
        "model_info": model_info(model),
    }


def choices_usage(choices: list[ChatChoice]) -> dict[str, Any]:
    # The prompt is counted once: the n choices share it.
    first = choices[0].done
    return usage(first.prompt_tokens, sum(c.done.completion_tokens for c in choices),
                 first.cached_tokens)


def _message(choice: ChatChoice, legacy: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content,
                               "refusal": None}
    if choice.tool_calls and legacy:
        call = choice.tool_calls[0]
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif choice.tool_calls:
        message["tool_calls"] = [call.to_openai() for call in choice.tool_calls]
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    return message


def _choice(choice: ChatChoice, with_logprobs: bool, legacy: bool) -> dict[str, Any]:
    return {
        "index": choice.index,
        "message": _message(choice, legacy),
        "logprobs": logprobs_object(choice.logprobs) if with_logprobs else None,
        "finish_reason": _legacy_reason(choice.finish_reason) if legacy
        else choice.finish_reason,
    }


def _legacy_reason(reason: str) -> str:
    return "function_call" if reason == "tool_calls" else reason


async def _chunks(run: ChatRun, head: dict[str, Any], include_usage: bool,
                  extras: Callable[[Done], dict[str, Any]] | None = None,
                  legacy: bool = False) -> AsyncIterator[bytes]:
    def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: list | None = None) -> bytes:
        payload: dict[str, Any] = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{
                "index": index,
                "delta": delta,
                "logprobs": logprobs_object(logprobs) if logprobs else None,
                "finish_reason": finish,
            }],
        }
        if include_usage:
            payload["usage"] = None
        return sse_data(payload)

    n = len(run.streams)
    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": ""})
    pending_logprobs: list[list] = [[] for _ in range(n)]
    prompt = completion = cached = 0
    last_done: Done | None = None
    try:
        async for i, event in run.events():
            if isinstance(event, LogprobsDelta):
                pending_logprobs[i].extend(event.entries)
                continue
            logprobs, pending_logprobs[i] = pending_logprobs[i], []
            if isinstance(event, ContentDelta):
                yield chunk(i, {"content": event.text}, logprobs=logprobs)
            elif isinstance(event, ReasoningDelta):
                yield chunk(i, {"reasoning_content": event.text}, logprobs=logprobs)
            elif isinstance(event, ToolCallStart) and legacy:
                yield chunk(i, {"function_call": {"name": event.name, "arguments": ""}},
                            logprobs=logprobs)
            elif isinstance(event, ToolCallArgsDelta) and legacy:
                yield chunk(i, {"function_call": {"arguments": event.text}},
                            logprobs=logprobs)
            elif isinstance(event, ToolCallStart):
                yield chunk(i, {"tool_calls": [{
                    "index": event.index, "id": event.id, "type": "function",
                    "function": {"name": event.name, "arguments": ""}}]}, logprobs=logprobs)
            elif isinstance(event, ToolCallArgsDelta):
                yield chunk(i, {"tool_calls": [{
                    "index": event.index, "function": {"arguments": event.text}}]},
                    logprobs=logprobs)
            elif isinstance(event, Finish):
                reason = _legacy_reason(event.reason) if legacy else event.reason
                yield chunk(i, {}, reason, logprobs=logprobs)
                prompt, cached = event.done.prompt_tokens, event.done.cached_tokens
                completion += event.done.completion_tokens
                last_done = event.done
        if include_usage or extras:
            final: dict[str, Any] = {**head, "object": "chat.completion.chunk", "choices": [],
                                     "usage": usage(prompt, completion, cached)}
            if extras and last_done is not None:
                final.update(extras(last_done))
            yield sse_data(final)
    except Exception as exc:  # headers are gone: report in-band, as OpenAI does
        err = as_api_error(exc)
        yield sse_data(error_body(err.message, err.type, err.param, err.code))
    yield DONE
