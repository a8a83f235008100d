"""response_format: JSON schemas and JSON objects enforced by grammar-constrained sampling."""

import asyncio
import json

import jsonschema
import openai
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
