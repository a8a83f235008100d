"""Tools through the chat API: forced calls are well formed, calls never leak into
content, streamed calls follow OpenAI's delta format, and results render back."""

from __future__ import annotations

import json
import re
from typing import Literal

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
    pieces = [d.tool_calls[0].function.arguments for d in call_deltas[1:]]
    assert len(pieces) >= 3 and all(pieces), "the arguments stream as they are generated"
    arguments = "".join(pieces)
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


# -- tool parameters with their own definitions ($defs), as nested pydantic models give ---

class Street(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=30)
    number: int = pydantic.Field(ge=1)


class Place(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=20)
    street: Street
    unit: Literal["c", "f"] | None = pydantic.Field(
        json_schema_extra={"type": ["string", "null"], "enum": ["c", "f", None]})


class Outline(pydantic.BaseModel):
    title: str = pydantic.Field(max_length=20)
    parts: list[Outline] = pydantic.Field(max_length=2)


LOCATE = {"type": "function", "function": {"name": "locate", "parameters": {
    "$defs": {"A": {"type": "object", "properties": {"city": {"type": "string",
                                                               "maxLength": 20}},
                    "required": ["city"]}},
    "type": "object", "properties": {"addr": {"$ref": "#/$defs/A"}}, "required": ["addr"]}}}


@pytest.mark.parametrize("tool_choice", [
    "required", {"type": "function", "function": {"name": "locate"}}])
def test_forced_call_with_defs_in_its_parameters(client, tool_choice):
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Where is the Louvre?"}],
        tools=[LOCATE, WEATHER], tool_choice=tool_choice, temperature=0, max_tokens=200)
    call = reply.choices[0].message.tool_calls[0]
    if tool_choice != "required":
        assert call.function.name == "locate"
    tool = LOCATE if call.function.name == "locate" else WEATHER
    _check_call(call, tool)


def test_pydantic_function_tool_with_a_nested_model(client):
    tool = openai.pydantic_function_tool(Place)
    assert "$defs" in tool["function"]["parameters"]
    reply = client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "Where is the Louvre?"}],
        tools=[tool], tool_choice={"type": "function", "function": {"name": "Place"}},
        temperature=0, max_tokens=300)
    call = reply.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Place)
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_pydantic_function_tool_with_a_recursive_model(client):
    """A tree of parts, which the tiny model may grow past any token limit: then the
    text it wrote is checked to follow the recursive schema as far as it goes."""
    tool = openai.pydantic_function_tool(Outline)
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Outline a short talk."}],
        tools=[tool], tool_choice={"type": "function", "function": {"name": "Outline"}},
        temperature=0, max_tokens=120)
    choice = reply.choices[0]
    if choice.finish_reason == "tool_calls":
        jsonschema.validate(json.loads(choice.message.tool_calls[0].function.arguments),
                            tool["function"]["parameters"])
    else:
        assert choice.finish_reason == "length"
        part = r'\{ ?"title" ?: ?"[^"]*" ?, ?"parts" ?: ?\[ ?'
        assert re.match(r'\{ ?"name" ?: ?"Outline" ?, ?"arguments" ?: ?' + f"({part})+",
                        choice.message.content), choice.message.content


def test_responses_forced_call_with_defs(client):
    fn = LOCATE["function"]
    reply = client.responses.create(
        model="m", input="Where is the Louvre?", temperature=0, max_output_tokens=200,
        tools=[{"type": "function", "name": fn["name"], "parameters": fn["parameters"]}],
        tool_choice={"type": "function", "name": "locate"})
    [call] = reply.output
    assert call.type == "function_call" and call.name == "locate"
    jsonschema.validate(json.loads(call.arguments), fn["parameters"])


# -- the deprecated functions API, mapped to tools -----------------------------------------

FUNCTIONS = [WEATHER["function"], TIME["function"]]


def test_legacy_function_call_is_answered_in_function_call(client):
    reply = client.chat.completions.create(
        model="m", messages=ASK, functions=FUNCTIONS, function_call={"name": "get_weather"},
        temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None and choice.message.content is None
    assert choice.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments),
                        WEATHER["function"]["parameters"])
    validate(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")

    follow_up = client.chat.completions.create(
        model="m", functions=FUNCTIONS, function_call="none", max_tokens=20, messages=[
            *ASK, {"role": "assistant", "content": None,
                   "function_call": choice.message.function_call.model_dump()},
            {"role": "function", "name": "get_weather", "content": '{"temp": 18}'}])
    assert follow_up.choices[0].message.function_call is None
    assert follow_up.choices[0].message.content


def test_legacy_function_call_streams_in_delta_function_call(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=ASK, functions=FUNCTIONS, function_call={"name": "get_time"},
        temperature=0, stream=True))
    calls = [c.choices[0].delta.function_call for c in chunks
             if c.choices and c.choices[0].delta.function_call]
    assert calls[0].name == "get_time" and all(c.name is None for c in calls[1:])
    assert len(calls) >= 3
    arguments = "".join(c.arguments for c in calls)
    jsonschema.validate(json.loads(arguments), TIME["function"]["parameters"])
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "function_call"
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")


def test_tools_and_functions_together_are_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER],
                                       functions=FUNCTIONS)
    assert "functions" in info.value.body["message"]
