"""Context and queue limits, on a server with one slot of 256 tokens and a queue of one."""

import threading

import httpx
import openai
import pytest

from tests.openapi_schema import validate

LONG = "The quick brown fox jumps over the lazy dog. " * 40  # about 400 tokens


def test_prompt_too_long_is_400_context_length_exceeded(small_client):
    with pytest.raises(openai.BadRequestError) as info:
        small_client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": LONG}])
    err = info.value.body
    assert err["code"] == "context_length_exceeded"
    numbers = [int(n) for n in __import__("re").findall(r"\d+", err["message"])]
    assert 256 in numbers and any(n > 256 for n in numbers)
    validate(info.value.response.json(), "ErrorResponse")


def test_prompt_too_long_in_a_stream_is_400_before_any_event(small_server):
    with httpx.stream("POST", small_server.origin + "/v1/chat/completions", timeout=30,
                      json={"model": "m", "stream": True,
                            "messages": [{"role": "user", "content": LONG}]}) as r:
        body = r.read()
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert b"data:" not in body
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_completion_prompt_too_long_is_400(small_client):
    with pytest.raises(openai.BadRequestError) as info:
        small_client.completions.create(model="m", prompt=LONG, stream=True)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "prompt"


def test_generation_stops_at_the_end_of_the_context(small_client):
    prompt = "Count upwards: " + ", ".join(str(i) for i in range(1, 60))
    reply = small_client.completions.create(model="m", prompt=prompt, max_tokens=-1,
                                            temperature=0)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.total_tokens == 256


def test_full_queue_is_503_with_retry_after(small_server, small_client):
    # One request generates, one waits; the third finds the queue full.
    body = {"model": "m", "max_tokens": 200, "temperature": 0.8, "ignore_eos": True,
            "stream": True,
            "messages": [{"role": "user", "content": "Write a long story."}]}
    started = threading.Barrier(3)
    results: list[int] = []

    def hold_a_place() -> None:
        with httpx.stream("POST", small_server.origin + "/v1/chat/completions", json=body,
                          timeout=120) as r:
            results.append(r.status_code)
            started.wait()
            r.read()

    workers = []
    for _ in range(2):
        t = threading.Thread(target=hold_a_place)
        t.start()
        workers.append(t)
    started.wait()
    try:
        with pytest.raises(openai.InternalServerError) as info:
            small_client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"]
        assert info.value.body["code"] == "server_overloaded"
        validate(info.value.response.json(), "ErrorResponse")
    finally:
        for t in workers:
            t.join()
    assert results == [200, 200]
    # Once the queue drains, the server serves again.
    small_server.wait_idle()
    reply = small_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content is not None
