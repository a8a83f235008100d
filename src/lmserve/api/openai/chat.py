"""POST /v1/chat/completions"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from lmserve.api.chat import ChatEvent, Finish, LogprobsDelta, LogprobsHold, start_chat
from lmserve.api.deps import get_manager
from lmserve.api.native.models import model_info
from lmserve.api.openai.chunks import ChunkTranslator, Extras, in_band_error
from lmserve.api.openai.protocol import ChatCompletionRequest, logprobs_object, new_id, now
from lmserve.api.serving import respond, stream_once_started, stream_response
from lmserve.engine import Done
from lmserve.engine.request import TokenLogprob
from lmserve.models import Model, ModelManager
from lmserve.parsers import (
    ContentDelta,
    ReasoningDelta,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
)

router = APIRouter()


@router.post("/v1/chat/completions")
@router.post("/api/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    manager: ModelManager = Depends(get_manager),
) -> Response:
    if body.stream:
        return await stream_once_started(request, _answer(body, request, manager),
                                         in_band_error)
    return await _answer(body, request, manager)


async def _answer(body: ChatCompletionRequest, request: Request,
                  manager: ModelManager) -> Response:
    model = await manager.resolve(body.model, ttl=body.ttl)
    run = start_chat(model, body.chat_spec())
    # The native route answers the same, plus lmserve's `stats` and `model_info`.
    native = request.url.path.startswith("/api/")
    translator = ChatCompletionTranslator(
        {"id": new_id("chatcmpl"), "created": now(), "model": model.id}, n=body.n,
        include_usage=body.include_usage, with_logprobs=body.logprobs,
        legacy=body.legacy_functions,
        extras=(lambda done: native_extras(model, done)) if native else None)
    if body.stream:
        return stream_response(request, run, translator)
    return await respond(request, run, translator)


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


@dataclass
class _Choice:
    """One choice's message, built up as its events arrive."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: Finish | None = None


class ChatCompletionTranslator(ChunkTranslator):
    """Chat events as chat.completion.chunk objects, and the chat.completion they add
    up to."""

    chunk_object = "chat.completion.chunk"
    shared_prompt = True

    def __init__(self, head: dict[str, Any], *, n: int, include_usage: bool,
                 with_logprobs: bool, legacy: bool, extras: Extras | None) -> None:
        super().__init__(head, n, include_usage=include_usage, extras=extras)
        self._with_logprobs = with_logprobs
        self._legacy = legacy
        self._choices = [_Choice() for _ in range(n)]
        self._held = LogprobsHold()

    def start(self) -> list[dict[str, Any]]:
        return [self._chunk(i, {"role": "assistant", "content": ""}) for i in range(self.n)]

    def feed(self, index: int, event: ChatEvent) -> list[dict[str, Any]]:
        choice = self._choices[index]
        if isinstance(event, LogprobsDelta):
            choice.logprobs.extend(event.entries)
        logprobs = self._held.take(index, event)
        if logprobs is None:
            return []
        delta: dict[str, Any]
        if isinstance(event, ContentDelta):
            choice.content.append(event.text)
            delta = {"content": event.text}
        elif isinstance(event, ReasoningDelta):
            choice.reasoning.append(event.text)
            delta = {"reasoning_content": event.text}
        elif isinstance(event, ToolCallStart):
            choice.calls.append(ToolCall(event.name, "", id=event.id))
            delta = ({"function_call": {"name": event.name, "arguments": ""}} if self._legacy
                     else {"tool_calls": [{"index": event.index, "id": event.id,
                                           "type": "function",
                                           "function": {"name": event.name,
                                                        "arguments": ""}}]})
        elif isinstance(event, ToolCallArgsDelta):
            choice.calls[-1].arguments += event.text
            delta = ({"function_call": {"arguments": event.text}} if self._legacy
                     else {"tool_calls": [{"index": event.index,
                                           "function": {"arguments": event.text}}]})
        elif isinstance(event, Finish):
            choice.finish = event
            self.dones[index] = event.done
            return [self._chunk(index, {}, self._reason(event), logprobs)]
        else:
            return []
        return [self._chunk(index, delta, None, logprobs)]

    def result(self) -> dict[str, Any]:
        return {
            **self.head,
            "object": "chat.completion",
            "choices": [self._whole_choice(i, c) for i, c in enumerate(self._choices)],
            "usage": self.usage(),
            **self.extra(),
        }

    def _reason(self, finish: Finish) -> str:
        if self._legacy and finish.reason == "tool_calls":
            return "function_call"
        return finish.reason

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
        return self.chunk({"index": index, "delta": delta,
                           "logprobs": logprobs_object(logprobs) if logprobs else None,
                           "finish_reason": finish})

    def _whole_choice(self, index: int, choice: _Choice) -> dict[str, Any]:
        assert choice.finish is not None
        content = "".join(choice.content)
        message: dict[str, Any] = {"role": "assistant",
                                   "content": None if choice.calls and not content
                                   else content,
                                   "refusal": None}
        if choice.calls and self._legacy:
            call = choice.calls[0]
            message["function_call"] = {"name": call.name, "arguments": call.arguments}
        elif choice.calls:
            message["tool_calls"] = [call.to_openai() for call in choice.calls]
        if choice.reasoning:
            message["reasoning_content"] = "".join(choice.reasoning)
        return {
            "index": index,
            "message": message,
            "logprobs": logprobs_object(choice.logprobs) if self._with_logprobs else None,
            "finish_reason": self._reason(choice.finish),
        }
