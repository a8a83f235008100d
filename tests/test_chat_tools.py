"""Tools through the chat API: forced calls are well formed, calls never leak into
content, streamed calls follow OpenAI's delta format, and results render back."""

import json

import jsonschema
import openai
import pydantic
import pytest

from tests.openapi_schema import validate

WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time",
    "description": "Current time in a timezone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def _check_call(call, tool):
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == tool["function"]["name"]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_required_tool_choice_gives_a_well_formed_call(client):
    reply = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER],
                                           tool_choice="required", temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    _check_call(choice.message.tool_calls[0], WEATHER)
    validate(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")


def test_named_tool_choice_picks_that_function(client):
    reply = client.chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER, TIME], temperature=0.7, seed=3,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    _check_call(reply.choices[0].message.tool_calls[0], TIME)


def test_tool_choice_none_answers_in_text(client):
    reply = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER],
                                           tool_choice="none", max_tokens=20)
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_named_tool_that_does_not_exist_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m", messages=ASK, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}})


def test_streamed_call_follows_the_delta_format(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0,
        stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    call_deltas = [d for d in deltas if d.tool_calls is not None]
    assert all(d.tool_calls for d in call_deltas), "no empty tool_calls arrays"
    first = call_deltas[0].tool_calls[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_weather"
    for d in call_deltas[1:]:
        later = d.tool_calls[0]
        assert later.index == 0 and later.id is None and later.type is None
        assert later.function.name is None
    arguments = "".join(d.tool_calls[0].function.arguments or "" for d in call_deltas)
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    assert not any(d.content for d in deltas), "the call must not leak into content"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")


class Weather(pydantic.BaseModel):
    city: str
    unit: str


def test_sdk_stream_helper_reassembles_the_call(client):
    with client.chat.completions.stream(
        model="m", messages=ASK, temperature=0,
        tools=[openai.pydantic_function_tool(Weather, name="get_weather")],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(call.function.parsed_arguments, Weather)


def test_tool_results_are_rendered_back(client):
    first = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER],
                                           tool_choice="required", temperature=0)
    call = first.choices[0].message.tool_calls[0]
    follow_up = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    reply = client.chat.completions.create(model="m", messages=follow_up, tools=[WEATHER],
                                           tool_choice="none", max_tokens=40, temperature=0)
    assert reply.choices[0].message.content
    baseline = client.chat.completions.create(model="m", messages=ASK, max_tokens=1)
    # The call and its result are part of the prompt.
    assert reply.usage.prompt_tokens > baseline.usage.prompt_tokens + 15
