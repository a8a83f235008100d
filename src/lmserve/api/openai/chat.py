"""POST /v1/chat/completions"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from lmserve.api.deps import get_manager
from lmserve.api.disconnect import ClientDisconnectedError, unless_disconnected
from lmserve.api.errors import as_api_error, error_body
from lmserve.api.openai.generation import collect, finish_reason
from lmserve.api.openai.protocol import ChatCompletionRequest, new_id, now, usage
from lmserve.api.sse import DONE, sse_data, sse_response
from lmserve.engine import Delta, Done
from lmserve.models import GenerationStream, ModelManager

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    model = manager.resolve(body.model)
    prompt = model.chat_prompt([m.as_template_dict() for m in body.messages])
    stream = model.generate(
        prompt, body.sampling_params(), max_tokens=body.token_limit(), stop=body.stop_list()
    )
    head = {"id": new_id("chatcmpl"), "created": now(), "model": model.id}
    if body.stream:
        return sse_response(_chunks(stream, head, body.include_usage))
    try:
        text, done = await unless_disconnected(request, collect(stream))
    except ClientDisconnectedError:
        return Response(status_code=499)
    return JSONResponse({
        **head,
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason(done),
        }],
        "usage": usage(done.prompt_tokens, done.completion_tokens, done.cached_tokens),
    })


async def _chunks(
    stream: GenerationStream, head: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return sse_data(payload)

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for event in stream:
            if isinstance(event, Delta):
                yield chunk({"content": event.text})
            elif isinstance(event, Done):
                yield chunk({}, finish_reason(event))
                if include_usage:
                    yield sse_data({
                        **head,
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": usage(event.prompt_tokens, event.completion_tokens,
                                       event.cached_tokens),
                    })
    except Exception as exc:  # headers are gone: report in-band, as OpenAI does
        err = as_api_error(exc)
        yield sse_data(error_body(err.message, err.type, err.param, err.code))
    yield DONE

