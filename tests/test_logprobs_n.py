"""logprobs / top_logprobs, n choices and logit_bias."""

import math

import httpx
import openai
import pytest

from tests.openapi_schema import validate

HI = [{"role": "user", "content": "Write one sentence about autumn."}]


def test_logprobs_in_openai_shape(client):
    reply = client.chat.completions.create(model="m", messages=HI, max_tokens=12,
                                           temperature=0, logprobs=True, top_logprobs=3)
    choice = reply.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and bytes(e.bytes).decode(errors="replace") == e.token
        assert len(e.top_logprobs) == 3
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        # Greedy decoding picks the most likely token.
        assert math.isclose(e.logprob, lps[0], abs_tol=1e-5)
    validate(reply.model_dump(exclude_unset=True), "CreateChatCompletionResponse")


def test_logprobs_streamed(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=HI, max_tokens=8, temperature=0, logprobs=True, top_logprobs=0,
        stream=True, stream_options={"include_usage": True}))
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs
               for e in c.choices[0].logprobs.content]
    assert len(entries) == chunks[-1].usage.completion_tokens
    assert all(e.top_logprobs == [] for e in entries)
    for c in chunks:
        validate(c.model_dump(exclude_unset=True), "CreateChatCompletionStreamResponse")


def test_no_logprobs_unless_asked(client):
    reply = client.chat.completions.create(model="m", messages=HI, max_tokens=4)
    assert reply.choices[0].logprobs is None


def test_n_choices_are_independent_and_seeded(client):
    kwargs = dict(model="m", messages=HI, max_tokens=20, temperature=1.0, n=3, seed=11)
    a = client.chat.completions.create(**kwargs)
    b = client.chat.completions.create(**kwargs)
    assert [c.index for c in a.choices] == [0, 1, 2]
    texts = [c.message.content for c in a.choices]
    assert texts == [c.message.content for c in b.choices]
    assert len(set(texts)) > 1
    one = client.chat.completions.create(**{**kwargs, "n": 1})
    assert a.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt is counted once
    assert a.usage.completion_tokens > one.usage.completion_tokens


def test_n_choices_streamed(client):
    chunks = list(client.chat.completions.create(
        model="m", messages=HI, max_tokens=10, temperature=1.0, n=2, seed=5, stream=True))
    by_index = {0: "", 1: ""}
    finished = set()
    for c in chunks:
        choice = c.choices[0]
        by_index[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finished.add(choice.index)
    assert finished == {0, 1}
    assert all(by_index.values())


def test_logit_bias_forces_and_bans_tokens(server, client):
    tokens = httpx.post(server.origin + "/api/v1/tokenize", timeout=10,
                        json={"model": "m", "text": " banana"}).json()["tokens"]
    assert len(tokens) == 1
    forced = client.chat.completions.create(model="m", messages=HI, max_tokens=3,
                                            temperature=0, logit_bias={str(tokens[0]): 100})
    assert forced.choices[0].message.content.count("banana") == 3

    plain = client.chat.completions.create(model="m", messages=HI, max_tokens=1, temperature=0,
                                           logprobs=True)
    first = plain.choices[0].logprobs.content[0].token
    first_id = httpx.post(server.origin + "/api/v1/tokenize", timeout=10,
                          json={"model": "m", "text": first}).json()["tokens"][0]
    banned = client.chat.completions.create(model="m", messages=HI, max_tokens=1,
                                            temperature=0, logit_bias={str(first_id): -100})
    assert banned.choices[0].message.content != first


@pytest.mark.parametrize("token", ["-5", "49152", "9999999"])
def test_logit_bias_outside_the_vocabulary_is_400(client, token):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=HI, max_tokens=1,
                                       logit_bias={token: 5})
    assert "logit_bias" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt="Hi", max_tokens=1, logit_bias={token: 5})
    assert client.completions.create(model="m", prompt="Hi", max_tokens=1).choices
