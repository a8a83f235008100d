"""Streams send SSE comments while a long prompt is read, so a client with a read timeout
shorter than the prompt's reading keeps its connection (Cline and other agent clients
give up on a silent socket)."""

from __future__ import annotations

import shutil

import httpx
import pytest

from lmserve.models.bundled import bundled_model_path
from tests.server_process import ServerProcess

READ_TIMEOUT = 2.0  # seconds a read may wait, as strict clients set it


JIT_MODEL = "test/smollm2-jit"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("keepalive")
    (home / "config.toml").write_text("[server]\nkeepalive_seconds = 1\n")
    library = tmp_path_factory.mktemp("keepalive-models")
    (library / JIT_MODEL).mkdir(parents=True)
    shutil.copy(bundled_model_path(), library / JIT_MODEL / "smollm2-jit.Q4_1.gguf")
    # One thread reads a prompt of ~600 tokens for seconds, even on a fast machine.
    proc = ServerProcess("--parallel", "1", "--threads", "1", "--no-share-cpu", home=home,
                         env={"LMSERVE_MODELS_DIR": str(library)})
    yield proc
    proc.stop()


def _long_prompt(tag: str) -> str:
    # Each route gets its own text, so no prompt is read from another's cache.
    return f"{tag}: " + " ".join(f"{tag}{i}" for i in range(200)) + "\nSay hi."


ROUTES = {
    "/v1/chat/completions": lambda text: {
        "messages": [{"role": "user", "content": text}], "max_tokens": 1},
    "/v1/responses": lambda text: {"input": text, "max_output_tokens": 16},
    "/v1/messages": lambda text: {
        "messages": [{"role": "user", "content": text}], "max_tokens": 1},
}
# The events a stream starts with, sent at once; the last event it ends with.
START_LINES = {"/v1/chat/completions": 1, "/v1/responses": 4, "/v1/messages": 4}
LAST_EVENT = {"/v1/chat/completions": "data: [DONE]",
              "/v1/responses": "event: response.",
              "/v1/messages": "event: message_stop"}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_client_with_a_short_read_timeout_survives_a_long_prompt(server, route):
    body = {"model": "m", "stream": True, **ROUTES[route](_long_prompt(route.split("/")[-1]))}
    timeout = httpx.Timeout(60, read=READ_TIMEOUT)
    with httpx.stream("POST", server.origin + route, json=body, timeout=timeout) as reply:
        assert reply.status_code == 200
        lines = [line for line in reply.iter_lines() if line]
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    assert all(lines[i] == ": keep-alive" for i in comments)
    # They came while the prompt was read: right after the opening events, before any
    # generated text.
    assert comments and comments[0] == START_LINES[route], lines[:8]
    events = [line for line in lines if not line.startswith(":")]
    last = events[-1] if route == "/v1/chat/completions" else events[-2]
    assert last.startswith(LAST_EVENT[route]), events[-3:]


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_stream_that_loads_its_model_just_in_time_is_answered(server, route):
    """The stream opens with keep-alive comments if the load outlasts one interval (the
    mechanism is tested step by step in tests/unit/test_stream_start.py); either way
    the client with a short read timeout gets its whole answer."""
    body = {"model": JIT_MODEL, "stream": True, **ROUTES[route]("Say hi.")}
    timeout = httpx.Timeout(60, read=READ_TIMEOUT)
    try:
        with httpx.stream("POST", server.origin + route, json=body, timeout=timeout) as reply:
            assert reply.status_code == 200
            lines = [line for line in reply.iter_lines() if line]
    finally:
        httpx.post(f"{server.origin}/api/v1/models/unload",
                   json={"instance_id": JIT_MODEL}, timeout=60)
    events = [line for line in lines if not line.startswith(":")]
    assert JIT_MODEL in events[0] or JIT_MODEL in events[1]
    last = events[-1] if route == "/v1/chat/completions" else events[-2]
    assert last.startswith(LAST_EVENT[route]), events[-3:]
