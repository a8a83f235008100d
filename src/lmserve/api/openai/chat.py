"""POST /v1/chat/completions"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from lmserve.api.openai.protocol import ChatCompletionRequest, new_id, now, usage
from lmserve.api.sse import DONE, sse_data, sse_response
from lmserve.models import ModelManager
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    run = start_chat(model, body.chat_spec())
    head = {"id": new_id("chatcmpl"), "created": now(), "model": model.id}
    if body.stream:
        return sse_response(_chunks(run, head, body.include_usage))
    try:
        choices = await unless_disconnected(request, run.collect())
    except ClientDisconnectedError:
        return Response(status_code=499)
    return JSONResponse({
        **head,
        "object": "chat.completion",
        "choices": [_choice(c, body.logprobs) for c in choices],
        "usage": choices_usage(choices),
    })


def choices_usage(choices: list[ChatChoice]) -> dict[str, Any]:
    # The prompt is counted once: the n choices share it.
    first = choices[0].done
    return usage(first.prompt_tokens, sum(c.done.completion_tokens for c in choices),
                 first.cached_tokens)


def _message(choice: ChatChoice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content,
                               "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [call.to_openai() for call in choice.tool_calls]
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    return message


def _choice(choice: ChatChoice, with_logprobs: bool) -> dict[str, Any]:
    return {
        "index": choice.index,
        "message": _message(choice),
        "logprobs": logprobs_object(choice.logprobs) if with_logprobs else None,
        "finish_reason": choice.finish_reason,
    }


async def _chunks(run: ChatRun, head: dict[str, Any], include_usage: bool
                  ) -> AsyncIterator[bytes]:
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
            elif isinstance(event, ToolCallStart):
                yield chunk(i, {"tool_calls": [{
                    "index": event.index, "id": event.id, "type": "function",
                    "function": {"name": event.name, "arguments": ""}}]}, logprobs=logprobs)
            elif isinstance(event, ToolCallArgsDelta):
                yield chunk(i, {"tool_calls": [{
                    "index": event.index, "function": {"arguments": event.text}}]},
                    logprobs=logprobs)
            elif isinstance(event, Finish):
                yield chunk(i, {}, event.reason, logprobs=logprobs)
                prompt, cached = event.done.prompt_tokens, event.done.cached_tokens
                completion += event.done.completion_tokens
        if include_usage:
            yield sse_data({**head, "object": "chat.completion.chunk", "choices": [],
                            "usage": usage(prompt, completion, cached)})
    except Exception as exc:  # headers are gone: report in-band, as OpenAI does
        err = as_api_error(exc)
        yield sse_data(error_body(err.message, err.type, err.param, err.code))
    yield DONE
