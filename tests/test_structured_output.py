"""response_format: JSON schemas and JSON objects enforced by grammar-constrained sampling."""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import re
import uuid
from typing import Annotated, Literal

import jsonschema
import openai
import pydantic
import pytest

from tests.openapi_schema import validate

# Bounded strings, so that every answer can finish within max_tokens: the grammar
# guarantees the shape of what is generated, not that a runaway string ends.
SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                       "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 40},
        "population": {"type": "integer", "minimum": 0},
        "coastal": {"type": "boolean"}},
     "required": ["city", "population", "coastal"], "additionalProperties": False},
    {"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 80},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 30},
                 "minItems": 1, "maxItems": 3}},
     "required": ["title", "tags"], "additionalProperties": False},
    {"type": "object", "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number"}},
     "required": ["sentiment", "score"], "additionalProperties": False},
    {"type": "object", "properties": {
        "steps": {"type": "array", "items": {
            "type": "object",
            "properties": {"n": {"type": "integer"},
                           "text": {"type": "string", "maxLength": 80}},
            "required": ["n", "text"], "additionalProperties": False},
            "maxItems": 3}},
     "required": ["steps"], "additionalProperties": False},
]
PROMPTS = [
    "Describe a fictional person.",
    "Tell me about a city you like.",
    "Summarise an article about cooking.",
    "How does this review feel: 'Great phone, terrible battery.'",
    "How do I boil an egg?",
]


def test_twenty_structured_outputs_validate(aclient):
    async def one(i: int):
        schema = SCHEMAS[i % len(SCHEMAS)]
        reply = await aclient.chat.completions.create(
            model="m", seed=i, temperature=0.8, max_tokens=400,
            messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            response_format={"type": "json_schema", "json_schema": {
                "name": f"answer_{i}", "schema": schema, "strict": True}})
        return schema, reply

    async def run():
        return await asyncio.gather(*(one(i) for i in range(20)))

    for schema, reply in asyncio.run(run()):
        assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
        data = json.loads(reply.choices[0].message.content)
        jsonschema.validate(data, schema)
    validate(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")


def test_json_object_is_always_one_object(client):
    for prompt in ("Give the price of an apple and of a pear as a JSON object.",
                   "Return a JSON object with your name."):
        reply = client.chat.completions.create(
            model="m", temperature=0, max_tokens=150, response_format={"type": "json_object"},
            messages=[{"role": "user", "content": prompt}])
        assert reply.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_structured_stream(client):
    schema = SCHEMAS[0]
    chunks = client.chat.completions.create(
        model="m", temperature=0, max_tokens=100, stream=True,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), schema)


def test_text_format_is_accepted(client):
    reply = client.chat.completions.create(
        model="m", max_tokens=5, response_format={"type": "text"},
        messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content is not None


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
    {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json"}}},
    {"type": "imaginary"},
], ids=["not", "patternProperties", "remote-ref", "bad-type"])
def test_unsupported_schema_is_a_clear_400(client, schema):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                     "schema": schema}})
    assert "not supported" in info.value.body["message"]
    assert info.value.body["param"] == "response_format"


def test_tool_schema_the_grammar_cannot_enforce_is_a_400_on_tools(client):
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "imaginary"}}}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                       tools=[tool], tool_choice="required")
    assert "not supported" in info.value.body["message"]
    assert info.value.body["param"] == "tools"


# -- pydantic models: every keyword pydantic emits, enforced ------------------------------

class Address(pydantic.BaseModel):
    street: str = pydantic.Field(max_length=30)
    city: str = pydantic.Field(max_length=20)


class Step(pydantic.BaseModel):
    n: int = pydantic.Field(ge=1, le=20)
    text: str = pydantic.Field(max_length=40)


class Node(pydantic.BaseModel):
    label: str = pydantic.Field(max_length=10)
    children: list[Node] = pydantic.Field(max_length=2)


class Unit(enum.Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


Short = Annotated[str, pydantic.Field(max_length=20)]
EMAIL = {"type": "string", "format": "email"}

MODELS: dict[str, type[pydantic.BaseModel]] = {
    "defs": pydantic.create_model("Person", name=(Short, ...), address=(Address, ...)),
    "anyOf-null": pydantic.create_model("Maybe", nickname=(Short | None, ...)),
    "enum-const": pydantic.create_model("Choice", unit=(Unit, ...),
                                        kind=(Literal["reading"], ...)),
    "type-list-null-enum": pydantic.create_model(
        "Reading", unit=(Literal["c", "f"] | None, pydantic.Field(json_schema_extra={
            "type": ["string", "null"], "enum": ["c", "f", None]}))),
    "formats": pydantic.create_model("Event", day=(datetime.date, ...),
                                     at=(datetime.datetime, ...), id=(uuid.UUID, ...)),
    "min-max-items": pydantic.create_model(
        "Tags", tags=(list[Short], pydantic.Field(min_length=2, max_length=3))),
    "pattern": pydantic.create_model(
        "Code", code=(str, pydantic.Field(pattern=r"^[A-Z]{3}-\d{2}$"))),
    "additionalProperties-false": pydantic.create_model(
        "Closed", __config__=pydantic.ConfigDict(extra="forbid"), a=(Short, ...)),
    "optional-not-required": pydantic.create_model("Partial", a=(Short, ...),
                                                   b=(int, 3)),
    "nested-arrays-of-objects": pydantic.create_model(
        "Recipe", steps=(list[Step], pydantic.Field(max_length=3))),
    "recursive": Node,
}


def test_pydantic_schemas_are_enforced(aclient):
    """One generation per model, all at once (the server batches them)."""
    ask = [{"role": "user", "content": "Fill in this form with made-up data."}]

    async def run():
        return await asyncio.gather(*(aclient.chat.completions.create(
            model="m", seed=7, temperature=0.7, max_tokens=250, messages=ask,
            response_format={"type": "json_schema", "json_schema": {
                "name": model.__name__, "schema": model.model_json_schema(), "strict": True}})
            for model in MODELS.values()))

    for (keyword, model), reply in zip(MODELS.items(), asyncio.run(run()), strict=True):
        text = reply.choices[0].message.content
        if model is Node and reply.choices[0].finish_reason == "length":
            continue  # a tree may outgrow max_tokens: the grammar bounds its form only
        assert reply.choices[0].finish_reason == "stop", (keyword, text)
        data = json.loads(text)
        jsonschema.validate(data, model.model_json_schema(),
                            format_checker=jsonschema.FormatChecker())
        model.model_validate(data)


def text(reply) -> str:
    return reply.choices[0].message.content


def test_email_format_and_zod_style_root_recursion(client):
    schema = {"type": "object", "properties": {
        "email": EMAIL,
        "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["email", "next"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="m", temperature=0, max_tokens=120,
        messages=[{"role": "user", "content": "A contact list as a chain."}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    if reply.choices[0].finish_reason == "length":
        # The chain may outgrow max_tokens (the grammar bounds each email, not the depth):
        # what was generated is still a prefix of the schema's form.
        assert re.match(r'\{ ?"email" ?: ?"[^"@]+@[^"]+\.[^"]+" ?, ?"next" ?: ?', text(reply))
        return
    jsonschema.validate(json.loads(text(reply)), schema,
                        format_checker=jsonschema.FormatChecker())


def test_enum_in_a_type_list_with_null_is_kept(client):
    schema = {"type": "object", "properties": {
        "unit": {"type": ["string", "null"], "enum": ["c", "f", None]}},
        "required": ["unit"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="m", temperature=0, max_tokens=50,
        messages=[{"role": "user", "content": "Which temperature unit do you use?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "u", "schema": schema}})
    assert json.loads(reply.choices[0].message.content)["unit"] in ("c", "f", None)


@pytest.mark.parametrize("keyword", ["maximum", "uniqueItems", "format: hostname"])
def test_unenforceable_keywords_are_a_400_naming_them(client, keyword):
    prop = {"maximum": {"type": "number", "maximum": 3},
            "uniqueItems": {"type": "array", "uniqueItems": True},
            "format: hostname": {"type": "string", "format": "hostname"}}[keyword]
    schema = {"type": "object", "properties": {"a": prop}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                     "schema": schema}})
    assert f"'{keyword}'" in info.value.body["message"]
    assert info.value.body["param"] == "response_format"


# -- JSON strings never hold raw control characters ----------------------------------------

POEM = {"type": "object", "properties": {"lines": {
    "type": "array", "items": {"type": "string", "maxLength": 60}, "minItems": 2,
    "maxItems": 4}}, "required": ["lines"], "additionalProperties": False}


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "poem", "schema": POEM}},
    {"type": "json_object"},
], ids=["json_schema", "json_object"])
def test_strings_have_no_raw_newlines(aclient, response_format):
    ask = [{"role": "user", "content": "Write a poem of four lines, with a line break "
                                       "after each line, as JSON."}]

    async def run():
        return await asyncio.gather(*(aclient.chat.completions.create(
            model="m", seed=seed, temperature=1.2, max_tokens=120, messages=ask,
            response_format=response_format) for seed in range(3)))

    for reply in asyncio.run(run()):
        text = reply.choices[0].message.content
        if reply.choices[0].finish_reason == "stop":
            json.loads(text)  # strict: a raw control character in a string fails here
        assert not any(ord(c) < 0x20 and c not in " \n\r\t" for c in text)
        inside = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
        assert not any(re.search(r"[\x00-\x1f]", s) for s in inside), text
