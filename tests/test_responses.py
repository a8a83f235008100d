"""POST /v1/responses (OpenAI's Responses API) through the official openai SDK, against the
real model, and the stream builder on its own for what the tiny model cannot produce."""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import openai
import pytest

from lmserve.api.chat import Finish, LogprobsDelta
from lmserve.api.openai.response_store import ResponseStore, StoredResponse
from lmserve.api.openai.responses import ResponseBuilder
from lmserve.api.serving import stream
from lmserve.engine import Done
from lmserve.engine.request import Timings, TokenLogprob
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart
from tests.openapi_schema import validate
from tests.sse_events import named_events

EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.reasoning_text.delta": "ResponseReasoningTextDeltaEvent",
    "response.reasoning_text.done": "ResponseReasoningTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
}

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "strict": True,
                "description": "Current weather in a city.", "parameters": WEATHER_PARAMS}
CHAT_WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": WEATHER_PARAMS, "strict": True}}
WEATHER_CHOICE = {"type": "function", "name": "get_weather"}

PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20},
                   "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def create_raw(client: openai.OpenAI, **kwargs) -> tuple[openai.types.responses.Response, dict]:
    """The SDK's parsed response and the JSON the server sent."""
    raw = client.responses.with_raw_response.create(model="m", **kwargs)
    return raw.parse(), raw.http_response.json()


def sse_events(server, payload: dict) -> list[tuple[str, dict]]:
    """A streamed response as (event line, data JSON) pairs, read off the wire."""
    with httpx.stream("POST", f"{server.base_url}/responses", timeout=300,
                      json={"model": "m", "stream": True, **payload}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        return named_events(reply)


def assert_status_consistent(raw: dict) -> None:
    """A response stopped by the model is completed; one cut off by the limit is not."""
    usage, limit = raw["usage"], raw["max_output_tokens"]
    if raw["status"] == "completed":
        assert raw["incomplete_details"] is None
        assert raw["completed_at"] >= raw["created_at"]
        assert limit is None or usage["output_tokens"] < limit
        assert all(item["status"] == "completed" for item in raw["output"])
    else:
        assert raw["status"] == "incomplete"
        assert raw["incomplete_details"] == {"reason": "max_output_tokens"}
        assert raw["completed_at"] is None
        assert usage["output_tokens"] == limit
        assert raw["output"][-1]["status"] == "incomplete"


def validate_event(event: dict) -> None:
    validate(event, EVENT_SCHEMAS[event["type"]])


def message_items(response) -> list:
    return [item for item in response.output if item.type == "message"]


# -- non-streaming ------------------------------------------------------------------------


def test_text_response(client):
    reply, raw = create_raw(client, input="What is the capital of France?",
                            instructions="You are a concise assistant.",
                            max_output_tokens=32, temperature=0)
    validate(raw, "Response")
    assert raw["object"] == "response"
    assert raw["id"].startswith("resp_")
    assert_status_consistent(raw)
    assert raw["error"] is None
    assert raw["instructions"] == "You are a concise assistant."
    assert raw["max_output_tokens"] == 32
    assert raw["temperature"] == 0 and raw["tools"] == [] and raw["tool_choice"] == "auto"
    assert raw["text"] == {"format": {"type": "text"}}
    assert raw["store"] is True and raw["metadata"] == {}
    [item] = raw["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["id"].startswith("msg_")
    [part] = item["content"]
    assert part["type"] == "output_text" and part["annotations"] == []
    assert part["logprobs"] == []  # not asked for
    assert reply.output_text == part["text"] != ""
    usage = raw["usage"]
    assert usage["input_tokens"] > 10 and 0 < usage["output_tokens"] <= 32
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert 0 <= usage["input_tokens_details"]["cached_tokens"] <= usage["input_tokens"]


def chat_prompt_tokens(client: openai.OpenAI, messages: list[dict], **kwargs) -> int:
    """What the same conversation costs through Chat Completions: the prompt must match."""
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=1,
                                           temperature=0, **kwargs)
    return reply.usage.prompt_tokens


def test_instructions_are_a_system_message(client):
    instructed = client.responses.create(model="m", input="Hi.", max_output_tokens=16,
                                         temperature=0, instructions="Answer like a pirate.")
    assert instructed.instructions == "Answer like a pirate."
    assert instructed.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hi."}])


def test_max_output_tokens_makes_it_incomplete(client):
    reply, raw = create_raw(client, input="Write a long essay about the sea.",
                            max_output_tokens=16, temperature=0)
    validate(raw, "Response")
    assert reply.status == "incomplete"
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert_status_consistent(raw)
    assert [item["type"] for item in raw["output"]] == ["message"]
    assert reply.output_text


def test_list_of_items_input(client):
    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Blue."}]},
        {"role": "developer", "content": "Reply in English."},
        {"role": "user", "content": "Name another one."},
    ]
    reply, raw = create_raw(client, input=conversation, max_output_tokens=16, temperature=0)
    validate(raw, "Response")
    assert reply.status in ("completed", "incomplete")
    assert reply.output_text
    assert reply.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "developer", "content": "Reply in English."},
        {"role": "user", "content": "Name another one."}])


def test_json_schema_output(client):
    reply, raw = create_raw(
        client, input="Invent a person and describe them as JSON.", temperature=0,
        max_output_tokens=64,
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON_SCHEMA,
                         "strict": True}})
    validate(raw, "Response")
    assert reply.status == "completed"
    assert raw["text"]["format"] == {"type": "json_schema", "name": "person",
                                     "schema": PERSON_SCHEMA, "strict": True}
    jsonschema.validate(json.loads(reply.output_text), PERSON_SCHEMA)


def test_json_object_output(client):
    reply = client.responses.create(model="m", input="Describe a cat as JSON.", temperature=0,
                                    max_output_tokens=48, text={"format": {"type": "json_object"}})
    assert reply.text.format.type == "json_object"
    if reply.status == "completed":  # a cut-off object is not yet valid JSON
        assert isinstance(json.loads(reply.output_text), dict)
    else:
        assert reply.output_text.lstrip().startswith("{")


def test_forced_function_call(client):
    reply, raw = create_raw(client, input="What is the weather in Paris?",
                            tools=[WEATHER_TOOL], tool_choice=WEATHER_CHOICE, temperature=0)
    validate(raw, "Response")
    assert reply.status == "completed"
    assert raw["tool_choice"] == WEATHER_CHOICE
    assert raw["tools"][0]["name"] == "get_weather"
    assert raw["tools"][0]["parameters"] == WEATHER_PARAMS
    [call] = raw["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert call["id"].startswith("fc_") and call["call_id"].startswith("call_")
    assert call["name"] == "get_weather"
    jsonschema.validate(json.loads(call["arguments"]), WEATHER_PARAMS)
    assert reply.output_text == ""


def test_function_call_output_follow_up(client):
    first = client.responses.create(model="m", input="What is the weather in Paris?",
                                    tools=[WEATHER_TOOL], tool_choice=WEATHER_CHOICE,
                                    temperature=0)
    [call] = first.output
    result = json.dumps({"temperature": 22, "sky": "sunny"})
    reply, raw = create_raw(
        client, previous_response_id=first.id, tools=[WEATHER_TOOL], temperature=0,
        max_output_tokens=32,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": result}])
    validate(raw, "Response")
    assert raw["previous_response_id"] == first.id
    assert reply.status in ("completed", "incomplete")
    assert {item.type for item in reply.output} <= {"message", "function_call"}
    # The earlier question, the call and its output make up the prompt.
    assert reply.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": call.call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.call_id, "name": "get_weather",
         "content": result},
    ], tools=[CHAT_WEATHER_TOOL])


def test_function_call_items_in_input(client):
    reply = client.responses.create(model="m", temperature=0, max_output_tokens=24,
                                    tools=[WEATHER_TOOL], tool_choice="none", input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": json.dumps({"city": "Paris", "unit": "celsius"})},
        {"type": "function_call_output", "call_id": "call_1", "output": "22 C, sunny"},
    ])
    assert reply.tool_choice == "none"
    assert [item.type for item in reply.output] == ["message"]
    assert reply.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": json.dumps({"city": "Paris",
                                                                "unit": "celsius"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather",
         "content": "22 C, sunny"},
    ], tools=[CHAT_WEATHER_TOOL], tool_choice="none")


def test_previous_response_carries_the_conversation(client):
    first = client.responses.create(model="m", input="My name is Ada. Say hello.",
                                    instructions="Be brief.", max_output_tokens=16,
                                    temperature=0)
    second = client.responses.create(model="m", previous_response_id=first.id,
                                     input="What is my name?", max_output_tokens=16,
                                     temperature=0)
    assert second.previous_response_id == first.id
    assert second.instructions is None  # instructions are not carried over
    assert second.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "user", "content": "My name is Ada. Say hello."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"}])


def test_retrieve_and_delete(client):
    reply = client.responses.create(model="m", input="Say hi.", max_output_tokens=8,
                                    temperature=0, metadata={"purpose": "test"})
    stored = client.responses.retrieve(reply.id)
    assert stored.id == reply.id
    assert stored.metadata == {"purpose": "test"}
    assert stored.output_text == reply.output_text
    assert stored.usage == reply.usage
    client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(reply.id)


def test_store_false_is_not_kept(client):
    reply = client.responses.create(model="m", input="Say hi.", max_output_tokens=8,
                                    temperature=0, store=False)
    assert reply.store is False
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="m", input="And again.", previous_response_id=reply.id,
                                max_output_tokens=8)
    error = info.value.body
    assert error["param"] == "previous_response_id"
    assert error["type"] == "invalid_request_error"
    assert reply.id in error["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def test_unknown_previous_response_is_404(server):
    reply = httpx.post(f"{server.base_url}/responses", timeout=30, json={
        "model": "m", "input": "Hi", "previous_response_id": "resp_nope"})
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "previous_response_id"
    assert reply.json()["error"]["code"] == "previous_response_not_found"


@pytest.mark.parametrize("payload, param", [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0]"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
    ({"input": "Hi", "tool_choice": {"type": "function", "name": "missing"},
      "tools": [WEATHER_TOOL]}, "tool_choice"),
    ({"input": "Hi", "tool_choice": "required"}, "tool_choice"),
    ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"input": "Hi", "temperature": 3}, "temperature"),
    ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
    ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}, "text.format"),
])
def test_bad_requests_are_400(client, payload, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", **payload)
    assert info.value.body["param"].startswith(param)


def test_logprobs_when_included(client):
    reply, raw = create_raw(client, input="Say hello.", max_output_tokens=8, temperature=0,
                            include=["message.output_text.logprobs"], top_logprobs=2)
    validate(raw, "Response")
    [part] = raw["output"][0]["content"]
    assert len(part["logprobs"]) == raw["usage"]["output_tokens"]
    assert "".join(e["token"] for e in part["logprobs"]) == part["text"]
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 for e in part["logprobs"])


# -- streaming ------------------------------------------------------------------------------


def test_stream_events_on_the_wire(server):
    events = sse_events(server, {"input": "What is the capital of France?",
                                 "instructions": "You are a concise assistant.",
                                 "max_output_tokens": 32, "temperature": 0})
    for name, data in events:
        assert name == data["type"]
        validate_event(data)
    data = [d for _, d in events]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    types = [d["type"] for d in data]
    deltas = [d for d in data if d["type"] == "response.output_text.delta"]
    assert deltas
    final = data[-1]["response"]
    assert_status_consistent(final)
    assert types == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * len(deltas),
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", f"response.{final['status']}",
    ]
    assert data[0]["response"]["status"] == "in_progress"
    assert data[0]["response"]["id"] == final["id"]
    [item] = final["output"]
    assert item["status"] == data[-2]["item"]["status"]
    text = "".join(d["delta"] for d in deltas)
    assert item["content"][0]["text"] == text == data[-4]["text"]
    assert {d["item_id"] for d in data[3:-2]} == {item["id"]}


def test_stream_with_the_sdk(client):
    events = list(client.responses.create(model="m", input="Write a long essay about the sea.",
                                          temperature=0, max_output_tokens=20, stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert types[-1] == "response.incomplete"  # OpenAI ends a cut-off response this way
    final = events[-1].response
    assert final.incomplete_details.reason == "max_output_tokens"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == final.output_text != ""
    assert final.usage.output_tokens == 20
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_stream_helper_final_response(client):
    # A closed choice: the grammar ends the answer well before the limit.
    answer = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
              "required": ["city"], "additionalProperties": False}
    with client.responses.stream(
            model="m", input="What is the capital of France?", max_output_tokens=32,
            temperature=0, text={"format": {"type": "json_schema", "name": "answer",
                                            "schema": answer}}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    jsonschema.validate(json.loads(final.output_text), answer)
    # Stored before the stream ended: it can be continued straight away.
    follow = client.responses.create(model="m", previous_response_id=final.id,
                                     input="And of Italy?", max_output_tokens=8,
                                     temperature=0)
    assert follow.usage.input_tokens == chat_prompt_tokens(client, [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": final.output_text},
        {"role": "user", "content": "And of Italy?"}])


def test_stream_function_call(server):
    events = sse_events(server, {"input": "What is the weather in Paris?",
                                 "tools": [WEATHER_TOOL], "tool_choice": WEATHER_CHOICE,
                                 "temperature": 0})
    data = [d for _, d in events]
    for d in data:
        validate_event(d)
    types = [d["type"] for d in data]
    n_deltas = types.count("response.function_call_arguments.delta")
    assert n_deltas >= 3, "the arguments stream as they are generated"
    assert types == [
        "response.created", "response.in_progress", "response.output_item.added",
        *["response.function_call_arguments.delta"] * n_deltas,
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    added, done = data[2]["item"], data[-2]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    assert (done["id"], done["call_id"]) == (added["id"], added["call_id"])
    arguments = "".join(d["delta"] for d in data if d["type"].endswith("arguments.delta"))
    assert arguments == data[-3]["arguments"] == done["arguments"]
    assert data[-3]["name"] == "get_weather"
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)
    assert data[-1]["response"]["output"] == [done]


def test_stream_json_schema(client):
    with client.responses.stream(
            model="m", input="Invent a person.", temperature=0, max_output_tokens=64,
            text={"format": {"type": "json_schema", "name": "person",
                             "schema": PERSON_SCHEMA, "strict": True}}) as stream:
        final = stream.get_final_response()
    jsonschema.validate(json.loads(final.output_text), PERSON_SCHEMA)


# -- the builder on scripted events ---------------------------------------------------------


def _done(reason: str, completion: int = 6) -> Done:
    return Done(reason, prompt_tokens=9, completion_tokens=completion, cached_tokens=4,
                timings=Timings(0.0, 0.0, 0.0, 0.0, 5))


class _ScriptedRun:
    """Stands in for a ChatRun: replays events, then optionally breaks."""

    def __init__(self, events: list, fail: Exception | None = None) -> None:
        self._events = events
        self._fail = fail
        self.cancelled = False

    async def events(self):
        for event in self._events:
            yield 0, event
        if self._fail is not None:
            raise self._fail

    def cancel(self) -> None:
        self.cancelled = True


def _builder(kept: list) -> ResponseBuilder:
    head = {"id": "resp_test", "object": "response", "created_at": 1, "model": "m",
            "instructions": None, "parallel_tool_calls": True, "temperature": 0.5,
            "top_p": 1.0, "tools": [], "tool_choice": "auto", "metadata": {},
            "text": {"format": {"type": "text"}}}
    return ResponseBuilder(head, lambda text: len(text.split()), keep=kept.append)


def _replay(run: _ScriptedRun, kept: list) -> list[dict]:
    async def read() -> list[bytes]:
        return [chunk async for chunk in stream(run, _builder(kept))]

    events = []
    for chunk in asyncio.run(read()):
        head, data = chunk.decode().removesuffix("\n\n").split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        validate_event(event)
        events.append(event)
    assert run.cancelled
    return events


def test_builder_reasoning_text_and_parallel_calls():
    run = _ScriptedRun([
        ReasoningDelta("think "), ReasoningDelta("hard"),
        LogprobsDelta((TokenLogprob(1, b"Hi", -0.5, ((1, b"Hi", -0.5),)),)),
        ContentDelta("Hi"),
        ToolCallStart(0, "call_a", "f"), ToolCallArgsDelta(0, '{"x":'),
        ToolCallArgsDelta(0, " 1}"),
        ToolCallStart(1, "call_b", "g"), ToolCallArgsDelta(1, "{}"),
        Finish("tool_calls", _done("stop")),
    ])
    kept: list = []
    events = _replay(run, kept)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert kept == [final]
    assert [item["type"] for item in final["output"]] == [
        "reasoning", "message", "function_call", "function_call"]
    reasoning, message, call_a, call_b = final["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think hard"}]
    assert message["content"][0]["text"] == "Hi"
    assert message["content"][0]["logprobs"][0]["token"] == "Hi"
    assert (call_a["call_id"], call_a["arguments"]) == ("call_a", '{"x": 1}')
    assert (call_b["call_id"], call_b["name"], call_b["arguments"]) == ("call_b", "g", "{}")
    assert all(item["status"] == "completed" for item in final["output"])
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 2
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 4
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == done == [0, 1, 2, 3]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_builder_empty_answer_is_an_empty_message():
    events = _replay(_ScriptedRun([Finish("stop", _done("stop", 0))]), [])
    [item] = events[-1]["response"]["output"]
    assert item["type"] == "message" and item["content"][0]["text"] == ""
    assert [e["type"] for e in events][2:] == [
        "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]


def test_builder_cut_off_call_is_incomplete():
    run = _ScriptedRun([ToolCallStart(0, "call_a", "f"), ToolCallArgsDelta(0, '{"x"'),
                        Finish("tool_calls", _done("length"))])
    events = _replay(run, [])
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_builder_failure_mid_stream():
    kept: list = []
    run = _ScriptedRun([ContentDelta("Hel")], fail=RuntimeError("the engine broke"))
    events = _replay(run, kept)
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert "the engine broke" in failed["error"]["message"]
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Hel"
    assert kept == []  # a failed response cannot be continued


def test_store_keeps_the_most_recently_used():
    store = ResponseStore(capacity=2)

    def stored(response_id: str) -> StoredResponse:
        return StoredResponse({"id": response_id, "output": [{"type": "message"}]},
                              [{"type": "message", "role": "user", "content": "hi"}])

    store.put(stored("a"))
    store.put(stored("b"))
    assert store.get("a") is not None  # now the most recent
    store.put(stored("c"))
    assert store.get("b") is None
    assert [r for r in ("a", "c") if store.get(r)] == ["a", "c"]
    assert len(store) == 2
    assert store.get("a").conversation() == [
        {"type": "message", "role": "user", "content": "hi"}, {"type": "message"}]
    assert store.delete("a") and not store.delete("a")
