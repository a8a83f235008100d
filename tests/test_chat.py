"""POST /v1/chat/completions through the official openai SDK, against the real model."""

import openai
import pytest

from tests.openapi_schema import validate

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_chat_completion(client):
    reply = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=32,
                                           temperature=0)
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    raw = reply.model_dump(exclude_unset=True)
    assert raw["choices"][0]["message"]["refusal"] is None
    assert raw["choices"][0]["logprobs"] is None
    validate(raw, "CreateChatCompletionResponse")


def test_content_parts_are_accepted(client):
    reply = client.chat.completions.create(
        model="m", max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}],
    )
    assert reply.choices[0].message.content


def test_stream(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=24, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "Paris" in text
    assert all(c.usage is None for c in chunks)
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")


def test_stream_matches_non_stream(client):
    kwargs = dict(model="m", messages=MESSAGES, max_tokens=40, temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or ""
                       for c in client.chat.completions.create(**kwargs, stream=True))
    assert streamed == whole


def test_stream_include_usage(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Write a long essay about the sea."}],
        max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + 16
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "length"
    n_text_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert 0 < n_text_chunks <= 16
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_is_honoured(client, field):
    reply = client.chat.completions.create(
        model="m", temperature=0, **{field: 5},
        messages=[{"role": "user", "content": "Write a long essay about the sea."}])
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_max_tokens_minus_one_means_no_limit(client):
    reply = client.chat.completions.create(
        model="m", temperature=0, max_tokens=-1,
        messages=[{"role": "user", "content": "Reply with one word: yes or no?"}])
    assert reply.choices[0].finish_reason == "stop"


def test_ignore_eos_runs_to_max_tokens(client):
    kwargs = dict(model="m", temperature=0, max_tokens=60,
                  messages=[{"role": "user", "content": "Reply with one word: yes or no?"}])
    assert client.chat.completions.create(**kwargs).choices[0].finish_reason == "stop"
    reply = client.chat.completions.create(**kwargs, extra_body={"ignore_eos": True})
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 60


def test_stop_string(client):
    kwargs = dict(model="m", temperature=0, max_tokens=40,
                  messages=[{"role": "user", "content": "Count from 1 to 10, comma separated."}])
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    assert "5" in full
    reply = client.chat.completions.create(**kwargs, stop=["5"])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == full[: full.index("5")]
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(**kwargs, stop="5", stream=True))
    assert streamed == reply.choices[0].message.content


def test_same_seed_same_text(client):
    kwargs = dict(model="m", temperature=1.0, max_tokens=40, messages=[
        {"role": "user", "content": "Invent a name for a cat and describe it."}])
    a = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content
    b = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content
    others = {client.chat.completions.create(**kwargs, seed=s).choices[0].message.content
              for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1, "different seeds should give different samples"


def test_sampling_parameters_are_accepted(client):
    reply = client.chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=8, temperature=0.7, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5,
        extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2})
    assert reply.usage.completion_tokens > 0


def test_bad_role_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "wizard", "content": "x"}])
    assert "messages" in (info.value.body.get("param") or "")
