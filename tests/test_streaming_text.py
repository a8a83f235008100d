"""Streamed text is UTF-8 safe and stop strings are matched across token boundaries."""

import httpx


def _stream_deltas(server, path: str, body: dict) -> list[str]:
    import json

    deltas = []
    with httpx.stream("POST", server.origin + path, json={**body, "stream": True},
                      timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choice = json.loads(line[6:])["choices"]
                if choice:
                    piece = choice[0].get("text") or choice[0].get("delta", {}).get("content")
                    if piece:
                        deltas.append(piece)
    return deltas


def test_multibyte_characters_are_never_split(server, client):
    body = {"model": "m", "temperature": 0, "max_tokens": 60,
            "prompt": "Emoji list: 🍎 apple, 🍌 banana, 🍇 grapes, 🍒 cherries, 🍉"}
    deltas = _stream_deltas(server, "/v1/completions", body)
    text = "".join(deltas)
    assert not any("\ufffd" in d for d in deltas)
    assert sum(ord(ch) > 0xFFFF for ch in text) >= 1, text  # the model wrote emoji
    whole = client.completions.create(**body).choices[0].text
    assert text == whole

    cjk = {"model": "m", "temperature": 0, "max_tokens": 40,
           "messages": [{"role": "user", "content": "Translate to Japanese: good morning"}]}
    deltas = _stream_deltas(server, "/v1/chat/completions", cjk)
    assert deltas and not any("\ufffd" in d for d in deltas)


def test_stop_string_split_across_tokens(server, client):
    body = {"model": "m", "temperature": 0, "max_tokens": 40,
            "prompt": "Here is a short story about a lighthouse keeper named Thomas:"}
    deltas = _stream_deltas(server, "/v1/completions", body)
    full = "".join(deltas)
    # A stop string that starts inside one token's text and ends inside the next one's.
    i = next(k for k in range(2, len(deltas) - 1)
             if len(deltas[k]) >= 2 and len(deltas[k + 1]) >= 2)
    stop = deltas[i][-2:] + deltas[i + 1][:2]
    expected = full[: full.index(stop)]

    reply = client.completions.create(**body, stop=[stop, "never-in-output"])
    assert reply.choices[0].text == expected
    assert reply.choices[0].finish_reason == "stop"
    streamed = "".join(_stream_deltas(server, "/v1/completions", {**body, "stop": stop}))
    assert streamed == expected
    assert stop not in streamed
