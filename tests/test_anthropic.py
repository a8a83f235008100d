"""Anthropic's Messages API through the official anthropic SDK, against the real model.

The bundled model is tiny: these tests check structure and what grammars guarantee,
never the quality of an answer.
"""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import jsonschema
import pytest

from lmserve.api.anthropic.messages import ContentBlocks, MessageTranslator, error_body
from lmserve.api.anthropic.protocol import MessagesRequest
from lmserve.api.chat import Finish
from lmserve.api.serving import stream
from lmserve.engine import Done
from lmserve.engine.engine import QueueFullError
from lmserve.engine.request import Timings
from lmserve.models import ModelNotFoundError
from lmserve.parsers import ContentDelta, ToolCallArgsDelta, ToolCallStart

SYSTEM = "You are a concise assistant."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Tell me a long story about a dragon and a knight."}]

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city.",
                "input_schema": WEATHER_SCHEMA}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# This SDK version has no temperature argument; the server still reads the field.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(server) -> anthropic.Anthropic:
    # The SDK's paths already start with /v1: the base URL is the bare origin.
    return anthropic.Anthropic(base_url=server.origin, api_key="x", max_retries=0)


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# -- generation -----------------------------------------------------------------------


def test_message_with_system(claude, server):
    reply = claude.messages.create(model="m", system=SYSTEM, messages=QUESTION,
                                   max_tokens=32, extra_body=GREEDY)
    assert reply.type == "message"
    assert reply.role == "assistant"
    assert reply.id.startswith("msg_")
    assert reply.model == server.status()["models"][0]["id"]
    assert reply.content and all(b.type == "text" for b in reply.content)
    assert text_of(reply).strip()
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert reply.stop_sequence is None
    assert reply.usage.input_tokens > 10
    assert 0 < reply.usage.output_tokens <= 32


def test_system_as_text_blocks_is_the_same_prompt(claude):
    as_string = claude.messages.count_tokens(model="m", system=SYSTEM, messages=QUESTION)
    as_blocks = claude.messages.count_tokens(
        model="m", system=[{"type": "text", "text": SYSTEM}], messages=QUESTION)
    assert as_blocks.input_tokens == as_string.input_tokens


def test_any_model_name_is_the_loaded_model(claude, server):
    reply = claude.messages.create(model="some-other-model", messages=QUESTION,
                                   max_tokens=4)
    assert reply.model == server.status()["models"][0]["id"]


def test_max_tokens_stop_reason(claude):
    reply = claude.messages.create(model="m", messages=STORY, max_tokens=3, extra_body=GREEDY)
    assert reply.stop_reason == "max_tokens"
    assert reply.usage.output_tokens == 3


def _first_unique_substring(text: str, start: int, size: int = 4) -> int:
    """A position at or after `start` whose `size` characters occur nowhere earlier."""
    for i in range(start, len(text) - size):
        if text.find(text[i:i + size]) == i and text[i:i + size].strip():
            return i
    raise AssertionError(f"no usable stop string in {text!r}")


def test_stop_sequence_cuts_the_output(claude):
    kwargs = dict(model="m", messages=STORY, extra_body=GREEDY)
    full = text_of(claude.messages.create(**kwargs, max_tokens=40))
    cut = _first_unique_substring(full, len(full) // 3)
    stop = full[cut:cut + 4]
    reply = claude.messages.create(**kwargs, max_tokens=40, stop_sequences=[stop])
    assert text_of(reply) == full[:cut]
    assert reply.stop_reason == "stop_sequence"
    assert reply.stop_sequence == stop


def test_forced_tool_use(claude):
    reply = claude.messages.create(model="m", messages=WEATHER_QUESTION, max_tokens=64,
                                   tools=[WEATHER_TOOL],
                                   tool_choice={"type": "tool", "name": "get_weather"})
    assert reply.stop_reason == "tool_use"
    uses = [b for b in reply.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].id.startswith("toolu_")
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)
    jsonschema.validate(uses[0].input, WEATHER_SCHEMA)


def test_any_tool_choice_calls_one_of_the_tools(claude):
    time_tool = {"name": "get_time", "input_schema": {
        "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
    reply = claude.messages.create(model="m", messages=WEATHER_QUESTION, max_tokens=64,
                                   tools=[WEATHER_TOOL, time_tool],
                                   tool_choice={"type": "any"})
    assert reply.stop_reason == "tool_use"
    use = next(b for b in reply.content if b.type == "tool_use")
    schema = WEATHER_SCHEMA if use.name == "get_weather" else time_tool["input_schema"]
    assert use.name in ("get_weather", "get_time")
    jsonschema.validate(use.input, schema)


def test_tool_result_follow_up(claude):
    first = claude.messages.create(model="m", messages=WEATHER_QUESTION, max_tokens=64,
                                   tools=[WEATHER_TOOL],
                                   tool_choice={"type": "tool", "name": "get_weather"})
    use = next(b for b in first.content if b.type == "tool_use")
    conversation = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                          for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "18 degrees and sunny"}]},
    ]
    reply = claude.messages.create(model="m", messages=conversation, max_tokens=24,
                                   extra_body=GREEDY, tools=[WEATHER_TOOL],
                                   tool_choice={"type": "none"})
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert all(b.type == "text" for b in reply.content)
    question_only = claude.messages.count_tokens(model="m", messages=WEATHER_QUESTION)
    assert reply.usage.input_tokens > question_only.input_tokens
    counted = claude.messages.count_tokens(model="m", messages=conversation,
                                           tools=[WEATHER_TOOL], tool_choice={"type": "none"})
    assert counted.input_tokens == reply.usage.input_tokens


# -- streaming ------------------------------------------------------------------------


def test_stream_matches_create(claude):
    kwargs = dict(model="m", system=SYSTEM, messages=QUESTION, max_tokens=40,
                  extra_body=GREEDY)
    whole = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text_of(whole)
    assert text_of(final) == text_of(whole)
    assert final.id.startswith("msg_")
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stream_tool_use(claude):
    kwargs = dict(model="m", messages=WEATHER_QUESTION, max_tokens=64, extra_body=GREEDY,
                  tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    whole = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.id.startswith("toolu_")
    jsonschema.validate(use.input, WEATHER_SCHEMA)
    assert use.input == next(b for b in whole.content if b.type == "tool_use").input
    pieces = [e.delta.partial_json for e in events
              if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(pieces) >= 3, "the arguments stream as they are generated"
    assert json.loads("".join(pieces)) == use.input


def _sse_frames(body: str) -> list[tuple[str, dict]]:
    frames = []
    for raw in body.strip().split("\n\n"):
        if raw.startswith(":"):
            continue  # a keep-alive comment, sent when the model is slow to answer
        lines = dict(line.split(": ", 1) for line in raw.split("\n"))
        frames.append((lines["event"], json.loads(lines["data"])))
    return frames


def test_raw_stream_framing_and_auth_headers(server):
    headers = {"x-api-key": "sk-ant-anything", "Authorization": "Bearer whatever",
               "anthropic-version": "2023-06-01"}
    body = {"model": "m", "messages": QUESTION, "max_tokens": 8, "stream": True}
    r = httpx.post(f"{server.origin}/v1/messages", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = _sse_frames(r.text)
    assert all(event == data["type"] for event, data in frames)
    kinds = [event for event, _ in frames]
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    start = frames[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    middle = kinds[2:-2]
    assert middle[0] == "content_block_start" and middle[-1] == "content_block_stop"
    assert set(middle[1:-1]) == {"content_block_delta"}
    assert all(data["index"] == 0 for _, data in frames[2:-2])
    output_tokens = frames[-2][1]["usage"]["output_tokens"]
    assert 0 < output_tokens <= 8
    # The model may end its turn before the limit; the reason must say which happened.
    expected = "max_tokens" if output_tokens == 8 else "end_turn"
    assert frames[-2][1]["delta"]["stop_reason"] == expected


# -- token counting -------------------------------------------------------------------


def test_count_tokens_matches_usage(claude):
    kwargs = dict(model="m", system=SYSTEM, messages=QUESTION)
    counted = claude.messages.count_tokens(**kwargs)
    reply = claude.messages.create(**kwargs, max_tokens=2)
    assert counted.input_tokens == reply.usage.input_tokens


def test_count_tokens_sees_every_part(claude):
    def count(**kwargs) -> int:
        return claude.messages.count_tokens(model="m", **kwargs).input_tokens

    plain = count(messages=QUESTION)
    # Without a system prompt the template may add its own default: compare two.
    longer = SYSTEM + " Answer in full sentences and explain your reasoning step by step."
    assert count(system=longer, messages=QUESTION) > count(system=SYSTEM, messages=QUESTION)
    assert count(messages=QUESTION, tools=[WEATHER_TOOL]) > plain
    assert count(messages=QUESTION, tools=[WEATHER_TOOL], tool_choice={"type": "none"}) \
        == plain

    def with_result(result: str) -> int:
        return count(messages=[
            *WEATHER_QUESTION,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                               "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": result}]}]},
        ], tools=[WEATHER_TOOL])

    assert with_result("18 degrees, sunny, light wind from the west") > with_result("18")


# -- errors ---------------------------------------------------------------------------

BAD_BODIES = [
    pytest.param({"model": "m", "messages": QUESTION}, "max_tokens", id="missing-max-tokens"),
    pytest.param({"model": "m", "max_tokens": 8,
                  "messages": [{"role": "system", "content": "hi"}]},
                 "messages.0.role", id="bad-role"),
    pytest.param({"model": "m", "max_tokens": 0, "messages": QUESTION}, "max_tokens",
                 id="zero-max-tokens"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": []}, "messages",
                 id="no-messages"),
    pytest.param({"model": "m", "max_tokens": 8, "temperature": 1.5, "messages": QUESTION},
                 "temperature", id="temperature-out-of-range"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {}}]}]},
        "messages.0.content", id="image-block"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content.0.text: Field required", id="text-block-without-text"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                      "input": {}}]}]},
        "tool_use", id="tool-use-from-user"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": QUESTION,
                  "tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "nope"}},
                 "nope", id="unknown-forced-tool"),
    pytest.param({"model": "m", "max_tokens": 8, "messages": QUESTION,
                  "tool_choice": {"type": "tool"}}, "tool_choice", id="tool-choice-no-name"),
]


@pytest.mark.parametrize(("body", "mentions"), BAD_BODIES)
def test_bad_request_is_anthropic_400(claude, body, mentions):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    error = caught.value
    assert error.status_code == 400
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "invalid_request_error"
    assert mentions in error.body["error"]["message"]
    assert set(error.body) == {"type", "error"}


def test_bad_count_tokens_request_is_anthropic_400(claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.count_tokens(model="m", messages=[{"role": "robot", "content": "x"}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("content", "mentions"), [
    (b'{"model": "m", "max_tokens": 8, "messages": [', "not valid JSON"),
    (b"[1, 2]", "JSON object"),
])
def test_unparsable_body_is_anthropic_400(server, content, mentions):
    r = httpx.post(f"{server.origin}/v1/messages", content=content,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert mentions in r.json()["error"]["message"]


def test_errors_map_to_anthropic_types():
    body, status, _ = error_body(ModelNotFoundError("x", ["a", "b"]))
    assert (status, body["error"]["type"]) == (404, "not_found_error")
    body, status, headers = error_body(QueueFullError(4))
    assert (status, body["error"]["type"]) == (503, "overloaded_error")
    assert headers == {"Retry-After": "1"}
    body, status, _ = error_body(ValueError("bad"))
    assert (status, body["error"]["type"]) == (400, "invalid_request_error")


def _done(reason: str) -> Done:
    return Done(reason, prompt_tokens=5, completion_tokens=2, cached_tokens=0,
                timings=Timings(0.0, 0.0, 0.0, 0.0, 5))


class _FakeRun:
    def __init__(self, events: list, fail: Exception | None = None) -> None:
        self._events = events
        self._fail = fail

    async def events(self):
        for event in self._events:
            yield 0, event
        if self._fail:
            raise self._fail

    def cancel(self) -> None:
        pass


def _stream(run: _FakeRun) -> list[tuple[str, dict]]:
    async def gather() -> bytes:
        return b"".join([chunk async for chunk in stream(run, MessageTranslator({"id": "msg_1"}))])

    return _sse_frames(asyncio.run(gather()).decode())


def test_mid_stream_error_is_an_error_event():
    frames = _stream(_FakeRun([ContentDelta("Hel")], fail=QueueFullError(1)))
    kinds = [event for event, _ in frames]
    assert kinds[-1] == "error"
    assert "message_stop" not in kinds
    assert frames[-1][1]["error"]["type"] == "overloaded_error"


def test_blocks_follow_the_order_of_the_output():
    frames = _stream(_FakeRun([
        ContentDelta("Let me check."),
        ToolCallStart(0, "call_abc", "get_weather"),
        ToolCallArgsDelta(0, '{"city": '),
        ToolCallArgsDelta(0, '"Paris"}'),
        Finish("tool_calls", _done("stop")),
    ]))
    kinds = [event for event, _ in frames]
    assert kinds == ["message_start", "ping",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert frames[5][1]["content_block"] == {"type": "tool_use", "id": "toolu_abc",
                                             "name": "get_weather", "input": {}}
    assert frames[5][1]["index"] == 1
    assert frames[-2][1]["delta"]["stop_reason"] == "tool_use"

    blocks = ContentBlocks()
    for _, event in [(0, e) for e in (ContentDelta("a"), ToolCallStart(0, "call_x", "f"),
                                       ToolCallArgsDelta(0, '{"k": 1}'))]:
        blocks.add(event)
    blocks.close()
    assert blocks.blocks == [{"type": "text", "text": "a"},
                             {"type": "tool_use", "id": "toolu_x", "name": "f",
                              "input": {"k": 1}}]


# -- request translation ----------------------------------------------------------------


def test_request_becomes_openai_style_chat_spec():
    request = MessagesRequest.model_validate({
        "model": "m", "max_tokens": 16, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather",
                        "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                 "content": [{"type": "text", "text": "timeout"}]},
                {"type": "text", "text": "Try again."}]},
        ],
        "metadata": {"user_id": "u"},
    })
    spec = request.chat_spec()
    assert spec.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [{
            "id": "toolu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "name": "get_weather",
         "content": "Error: timeout"},
        {"role": "user", "content": "Try again."},
    ]
    assert spec.tools == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": WEATHER_SCHEMA}}]
    assert spec.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert spec.parallel_tool_calls is False
    assert spec.stop == ["END"]
    assert spec.max_tokens == 16
    assert (spec.sampling.temperature, spec.sampling.top_k) == (0.2, 5)


@pytest.mark.parametrize(("choice", "expected"), [
    (None, "auto"), ({"type": "auto"}, "auto"), ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
])
def test_tool_choice_translation(choice, expected):
    body = {"model": "m", "max_tokens": 4, "messages": QUESTION, "tools": [WEATHER_TOOL]}
    if choice:
        body["tool_choice"] = choice
    assert MessagesRequest.model_validate(body).chat_spec().tool_choice == expected
