"""A CI-sized fuzz of the real server through its own OpenAPI document (schemathesis, with
the real model): no 5xx, no answer that breaks its documented status, type or schema, no
invalid request accepted, and the server still serving afterwards. bench/fuzz.py runs the
same at 2,000+ cases, the machine-changing routes included."""

from __future__ import annotations

import httpx
import pytest

from tests.fuzz_run import run_fuzz
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def fuzzed_server():
    # A server of its own: fuzzed requests may set TTLs and fill the response store.
    proc = ServerProcess("--parallel", "2")
    yield proc
    proc.stop()


def test_fuzz_finds_nothing_and_the_server_keeps_serving(fuzzed_server: ServerProcess) -> None:
    result = run_fuzz(fuzzed_server.origin, max_examples=3, seed=20261129, timeout=500)
    assert result.exit_code == 0 and not result.failures, result.output[-6000:]
    assert result.cases >= 40, result.output[-3000:]
    assert result.server_errors == 0
    # Every operation the document lists (but the live log and the loading routes) was hit.
    assert len({route for route, _ in result.statuses}) >= 20, result.statuses

    after = httpx.post(f"{fuzzed_server.base_url}/chat/completions", timeout=120, json={
        "model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert after.status_code == 200, after.text
    assert fuzzed_server.wait_idle(timeout=30)["models"][0]["busy_slots"] == 0
