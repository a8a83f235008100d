"""Many clients at once on one model: continuous batching, seeds, prefix cache and
cancellation, through the real server."""

import asyncio
import socket
import time

import httpx
import pytest

QUESTIONS = [
    "What is the capital of France?",
    "Name three colors of the rainbow.",
    "What do bees make?",
    "How many legs does a spider have?",
    "What is the opposite of hot?",
    "Which planet do we live on?",
    "What language is spoken in Spain?",
    "What is 2 plus 2?",
]


async def _stream_text(aclient, question: str, **kwargs) -> str:
    stream = await aclient.chat.completions.create(
        model="m", messages=[{"role": "user", "content": question}], stream=True, **kwargs)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts)


@pytest.mark.parametrize("n_clients", [4, 8])
def test_concurrent_streams_are_independent(aclient, n_clients):
    kwargs = dict(temperature=0, max_tokens=40)

    async def run():
        alone = [await _stream_text(aclient, q, **kwargs) for q in QUESTIONS[:n_clients]]
        together = await asyncio.gather(
            *(_stream_text(aclient, q, **kwargs) for q in QUESTIONS[:n_clients]))
        return alone, together

    alone, together = asyncio.run(run())
    assert together == alone
    assert len(set(together)) == n_clients  # different answers, not one repeated


def test_seeded_output_is_the_same_alone_or_alongside_others(aclient):
    kwargs = dict(temperature=1.0, top_p=0.95, max_tokens=48, seed=4242)
    question = "Tell me a short story about a dragon."

    async def run():
        alone = await _stream_text(aclient, question, **kwargs)
        crowd = [_stream_text(aclient, q, temperature=0.9, max_tokens=48, seed=i)
                 for i, q in enumerate(QUESTIONS[:5])]
        results = await asyncio.gather(_stream_text(aclient, question, **kwargs), *crowd)
        return alone, results[0]

    alone, together = asyncio.run(run())
    assert together == alone


def test_repeated_system_prompt_reuses_the_cache(client):
    system = "You are a helpful assistant for a bakery. " * 40
    usage = [
        client.chat.completions.create(
            model="m", max_tokens=4, temperature=0,
            messages=[{"role": "system", "content": system},
                      {"role": "user", "content": q}]).usage
        for q in ("Do you sell bread?", "When do you open?")
    ]
    assert usage[0].prompt_tokens > 300
    assert usage[1].prompt_tokens_details.cached_tokens >= usage[0].prompt_tokens - 20


def test_clients_that_disconnect_mid_stream_free_their_slots(server):
    body = {"model": "m", "stream": True, "max_tokens": 2000, "temperature": 0.8,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long story about a ship."}]}
    before = len(server.cancelled())

    async def read_a_little_then_hang_up(i: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            async with http.stream("POST", server.origin + "/v1/chat/completions",
                                   json={**body, "seed": i}) as r:
                n = 0
                async for line in r.aiter_lines():
                    n += line.startswith("data: ")
                    if n >= 4:
                        break  # leaving the block closes the connection

    async def run():
        await asyncio.gather(*(read_a_little_then_hang_up(i) for i in range(10)))

    asyncio.run(run())
    status = server.wait_idle(timeout=10)
    model = status["models"][0]
    assert model["busy_slots"] == 0 and model["queued"] == 0, status
    cancelled = server.cancelled()[before:]
    assert len(cancelled) == 10
    # Each stopped within a tick or two of its client leaving, far from max_tokens.
    assert max(cancelled) < 200, cancelled

    t0 = time.monotonic()
    r = httpx.post(server.origin + "/v1/chat/completions", timeout=60, json={
        "model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    assert time.monotonic() - t0 < 30


def test_non_streaming_client_that_disconnects_frees_its_slot(server):
    before = len(server.cancelled())
    payload = (b'{"model":"m","max_tokens":3000,"temperature":0.8,"ignore_eos":true,"messages":'
               b'[{"role":"user","content":"Write a very long story about a forest."}]}')
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nContent-Length: "
               + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while server.status()["models"][0]["busy_slots"] == 0:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
    status = server.wait_idle(timeout=10)
    assert status["models"][0]["busy_slots"] == 0
    assert len(server.cancelled()[before:]) == 1
