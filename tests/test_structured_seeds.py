"""Grammar-checked sampling keeps the guarantee: whatever the seed, a json_schema reply
is JSON valid for the schema. A hot temperature makes the model's own picks stray from
the grammar often, so many of these tokens are sampled a second time under it."""

from __future__ import annotations

import asyncio
import json

import jsonschema

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0},
        "mood": {"type": "string", "enum": ["happy", "sad", "calm"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                 "maxItems": 3},
    },
    "required": ["name", "age", "mood", "tags"],
    "additionalProperties": False,
}


def test_forty_seeds_all_give_valid_json(aclient):
    async def one(seed: int):
        return await aclient.chat.completions.create(
            model="m", seed=seed, temperature=1.5, max_tokens=200,
            messages=[{"role": "user", "content": "Describe someone you met today."}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "person", "schema": SCHEMA, "strict": True}})

    async def run():
        return await asyncio.gather(*(one(seed) for seed in range(40)))

    replies = asyncio.run(run())
    for reply in replies:
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    assert len({r.choices[0].message.content for r in replies}) > 20  # the seeds differ
