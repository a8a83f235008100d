"""Request ids, one log line per request (failures included), JSON logs, prompt logging
on request, and Prometheus metrics, all read from a real server."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def observed():
    proc = ServerProcess("--parallel", "2", "--context-length", "256",
                         "--log-format", "json", "--log-prompts")
    yield proc
    proc.stop()


def _post(proc: ServerProcess, path: str, request_id: str, **kwargs) -> httpx.Response:
    return httpx.post(proc.origin + path, headers={"X-Request-Id": request_id}, timeout=120,
                      **kwargs)


def _entries(proc: ServerProcess) -> list[dict]:
    entries = []
    for line in proc.log().splitlines():
        line = line.strip()
        if line:
            entries.append(json.loads(line))  # every line is one JSON object
    return entries


def _request_lines(proc: ServerProcess, request_id: str, timeout: float = 60) -> list[dict]:
    """The request log lines of one request, once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [e for e in _entries(proc)
                 if e["logger"] == "lmserve.requests" and e.get("request_id") == request_id]
        if lines or time.monotonic() > deadline:
            return lines


def _chat(prompt: str, **extra) -> dict:
    return {"model": SMOL, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 4, **extra}


def test_request_id_is_echoed_or_made(observed):
    given = _post(observed, "/v1/chat/completions", "trace-42.a:b", json=_chat("Hi"))
    assert given.headers["x-request-id"] == "trace-42.a:b"
    for bad in ("x" * 129, "no spaces", "ünï"):
        made = httpx.get(observed.origin + "/v1/models", timeout=30,
                         headers={"X-Request-Id": bad.encode()})
        assert len(made.headers["x-request-id"]) == 32 and made.headers["x-request-id"] != bad
    assert httpx.get(observed.origin + "/health", timeout=30).headers["x-request-id"]


def test_every_request_ends_with_one_log_line(observed):
    ok = _post(observed, "/v1/chat/completions", "ok-1", json=_chat("Name a colour."))
    assert ok.status_code == 200
    bad_json = _post(observed, "/v1/chat/completions", "bad-json-1", content=b"{nope")
    assert bad_json.status_code == 400
    unknown = _post(observed, "/api/v1/models/load", "unknown-1", json={"model": "no/such"})
    assert unknown.status_code == 404
    overflow = _post(observed, "/v1/chat/completions", "overflow-1",
                     json=_chat("word " * 400))
    assert overflow.status_code == 400
    embedded = _post(observed, "/v1/embeddings", "embed-1", json={"model": SMOL,
                                                                  "input": "hello world"})
    assert embedded.status_code == 200
    missing = _post(observed, "/v1/no-such-route", "route-1", json={})
    assert missing.status_code == 404

    [line] = _request_lines(observed, "ok-1")
    assert line["status"] == 200 and line["model"] == SMOL and line["method"] == "POST"
    assert line["path"] == "/v1/chat/completions" and line["duration_s"] >= 0
    assert line["prompt_tokens"] == ok.json()["usage"]["prompt_tokens"]
    assert line["completion_tokens"] == ok.json()["usage"]["completion_tokens"]
    assert "error" not in line

    expected = {"bad-json-1": (400, "invalid_request_error"),
                "unknown-1": (404, "model_not_found"),
                "overflow-1": (400, "context_length_exceeded"),
                "route-1": (404, "unknown_url")}
    for request_id, (status, code) in expected.items():
        [line] = _request_lines(observed, request_id)
        assert (line["status"], line["error"]) == (status, code), line
    assert _request_lines(observed, "overflow-1")[0]["model"] == SMOL

    [line] = _request_lines(observed, "embed-1")
    assert line["status"] == 200 and line["prompt_tokens"] == embedded.json()["usage"][
        "prompt_tokens"]

    entries = _entries(observed)
    # the engine's own line about the request carries its id
    engine = [e for e in entries if e["logger"] == "lmserve.engine"
              and e.get("request_id") == "ok-1"]
    assert len(engine) == 1 and "generated" in engine[0]["message"]
    # --log-prompts: the prompt and the output text are in the log
    prompts = [e for e in entries if e.get("request_id") == "ok-1"
               and e["message"].startswith("prompt ")]
    assert len(prompts) == 1 and "Name a colour." in prompts[0]["message"]
    assert ok.json()["choices"][0]["message"]["content"] in prompts[0]["message"]


def test_log_stream_shows_failed_requests(observed):
    with httpx.stream("GET", observed.origin + "/api/v1/logs/stream", timeout=60) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        assert _post(observed, "/v1/chat/completions", "streamed-bad", content=b"[").status_code \
            == 400
        for line in lines:
            if line.startswith("data: ") and "streamed-bad" in line:
                entry = json.loads(line[6:])
                if entry["logger"] == "lmserve.requests":
                    break
    assert entry["status"] == 400 and entry["error"] == "invalid_request_error"
    assert "POST /v1/chat/completions 400" in entry["message"]


def _scrape(proc: ServerProcess) -> dict[str, list]:
    text = httpx.get(proc.origin + "/metrics", timeout=30).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_after_real_requests(observed):
    client = openai.OpenAI(base_url=observed.base_url, api_key="x", max_retries=0)
    before = _scrape(observed)
    prompt = "Tell me one fact about the moon."
    generated = 0
    for _ in range(2):  # the second reads the prompt from the prefix cache
        stream = client.chat.completions.create(**_chat(prompt), stream=True,
                                                stream_options={"include_usage": True})
        generated += sum(c.usage.completion_tokens for c in stream if c.usage)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**_chat("word " * 400))

    def grew(family: str, sample: str, **labels: str) -> float:
        return (_value(after.get(family, []), sample, **labels)
                - _value(before.get(family, []), sample, **labels))

    route = "/v1/chat/completions"
    deadline = time.monotonic() + 30
    while True:  # a request is counted just after its last byte is sent
        after = _scrape(observed)
        total = grew("lmserve_requests", "lmserve_requests_total", route=route)
        if total >= 3 or time.monotonic() > deadline:
            break
    assert grew("lmserve_requests", "lmserve_requests_total", route=route, status="200") == 2
    assert grew("lmserve_requests", "lmserve_requests_total", route=route, status="400") == 1
    assert grew("lmserve_prompt_tokens", "lmserve_prompt_tokens_total", model=SMOL) > 0
    assert grew("lmserve_generation_tokens", "lmserve_generation_tokens_total",
                model=SMOL) == generated > 0
    assert grew("lmserve_prefix_cache_hit_tokens", "lmserve_prefix_cache_hit_tokens_total",
                model=SMOL) > 0
    assert grew("lmserve_time_to_first_token_seconds",
                "lmserve_time_to_first_token_seconds_count", model=SMOL) == 2
    assert grew("lmserve_inter_token_latency_seconds",
                "lmserve_inter_token_latency_seconds_count", model=SMOL) >= 2
    assert _value(after["lmserve_model_load_seconds"], "lmserve_model_load_seconds_count",
                  model=SMOL) == 1
    assert _value(after["lmserve_models_loaded"], "lmserve_models_loaded") == 1
    assert _value(after["lmserve_slots"], "lmserve_slots", model=SMOL) == 2
    assert _value(after["lmserve_slots_busy"], "lmserve_slots_busy", model=SMOL) == 0
    assert _value(after["lmserve_queue_depth"], "lmserve_queue_depth", model=SMOL) == 0
