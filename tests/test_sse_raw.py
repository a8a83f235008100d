"""The raw bytes of a stream, as curl sees them: `data: <json>\n\n` events, `[DONE]` last."""

import json

import httpx


def test_sse_framing(server):
    body = {"model": "local-model", "stream": True, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]}
    with httpx.stream("POST", server.origin + "/v1/chat/completions", json=body,
                      timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")
    assert events[-1] == ""
    # Keep-alive comments may come when the model is slow; every other event is data.
    events = [e for e in events[:-1] if not e.startswith(": ")]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
