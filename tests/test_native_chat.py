"""POST /api/v1/chat, LM Studio's native chat, through httpx: whole and streamed answers,
every event in its order and shape, a just-in-time load's progress, a long prompt's
progress, and chats continued across a restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from lmserve.models.bundled import bundled_model_path
from tests.server_process import ServerProcess
from tests.sse_events import named_events
from tests.test_mcp_tools import closed_port_url

JIT_MODEL = "test/smollm2-jit"
STATS = {"input_tokens", "total_output_tokens", "reasoning_output_tokens",
         "tokens_per_second", "time_to_first_token_seconds"}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A models folder with a copy of the bundled model, loaded only when asked for."""
    root = tmp_path_factory.mktemp("native-chat-models")
    folder = root / JIT_MODEL
    folder.mkdir(parents=True)
    shutil.copy(bundled_model_path(), folder / "smollm2-jit.Q4_1.gguf")
    return root


@pytest.fixture(scope="module")
def server(library: Path, tmp_path_factory):
    home = tmp_path_factory.mktemp("native-chat-home")
    # An MCP server that is down, declared as a user would declare one.
    (home / "mcp.json").write_text(json.dumps({"mcpServers": {"down": {
        "url": closed_port_url()}}}))
    proc = ServerProcess("--parallel", "1", "--log-prompts", home=home,
                         env={"LMSERVE_MODELS_DIR": str(library)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def model(server: ServerProcess) -> str:
    """The instance loaded at start (the bundled model)."""
    return server.status()["models"][0]["id"]


def chat(server: ServerProcess, **body) -> httpx.Response:
    return httpx.post(f"{server.origin}/api/v1/chat", json=body, timeout=300)


def chat_events(server: ServerProcess, **body) -> list[tuple[str, dict]]:
    """A streamed chat as (event name, data) pairs, read off the wire."""
    with httpx.stream("POST", f"{server.origin}/api/v1/chat", timeout=300,
                      json={**body, "stream": True}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = named_events(reply)
    for name, data in events:
        assert data["type"] == name
    return events


def assert_result(result: dict, model: str) -> None:
    assert result["model_instance_id"] == model
    assert set(result["stats"]) >= STATS
    stats = result["stats"]
    assert stats["input_tokens"] > 0 and stats["total_output_tokens"] > 0
    assert stats["tokens_per_second"] >= 0 and stats["time_to_first_token_seconds"] >= 0
    assert result["output"], result
    for item in result["output"]:
        assert item["type"] in ("message", "reasoning")
        assert set(item) == {"type", "content"} and isinstance(item["content"], str)


def test_whole_answer(server, model):
    reply = chat(server, model=model, input="What is the capital of France?",
                 system_prompt="Answer in one short sentence.", max_output_tokens=24,
                 temperature=0)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert_result(result, model)
    assert result["response_id"].startswith("resp_")
    assert "model_load_time_seconds" not in result["stats"]  # it was loaded already
    # Kept to be continued, but it is no Responses API object.
    retrieve = httpx.get(f"{server.base_url}/responses/{result['response_id']}", timeout=30)
    assert retrieve.status_code == 404
    assert result["output"][-1]["type"] == "message" and result["output"][-1]["content"]
    assert result["stats"]["total_output_tokens"] <= 24


def test_streamed_events_in_order(server, model):
    events = chat_events(server, model=model, input=[{"type": "message",
                                                      "content": "Say hello."}],
                         max_output_tokens=12, temperature=0, top_k=20, min_p=0.1,
                         repeat_penalty=1.1, top_p=0.9)
    names = [name for name, _ in events]
    assert names[0] == "chat.start" and events[0][1]["model_instance_id"] == model
    assert names[-1] == "chat.end"
    assert not any(n.startswith("model_load.") for n in names)  # loaded already
    reading = [n for n in names if n.startswith("prompt_processing.")]
    assert reading[0] == "prompt_processing.start" and reading[-1] == "prompt_processing.end"
    progress = [d["progress"] for n, d in events if n == "prompt_processing.progress"]
    assert progress and progress == sorted(progress) and progress[-1] == 1.0
    # The message opens after the prompt is read, and its deltas are the whole answer.
    assert names.index("message.start") > names.index("prompt_processing.end")
    assert names[names.index("message.start"):-1] == (
        ["message.start"] + ["message.delta"] * names.count("message.delta") + ["message.end"])
    text = "".join(d["content"] for n, d in events if n == "message.delta")
    result = events[-1][1]["result"]
    assert_result(result, model)
    assert result["output"] == [{"type": "message", "content": text}]
    assert result["response_id"].startswith("resp_")


def test_a_long_prompt_reports_its_progress(server, model):
    text = " ".join(f"item{i}" for i in range(700))  # about 2,000 tokens
    events = chat_events(server, model=model, input=f"{text}\nHow many items?",
                         max_output_tokens=1, store=False)
    progress = [d["progress"] for n, d in events if n == "prompt_processing.progress"]
    result = events[-1][1]["result"]
    assert result["stats"]["input_tokens"] > 1500
    assert len(progress) > 1, "read in chunks, each reported"
    assert progress == sorted(progress) and 0 < progress[0] < 1 and progress[-1] == 1.0
    assert "response_id" not in result  # store: false


def test_a_just_in_time_load_shows_its_progress(server):
    events = chat_events(server, model=JIT_MODEL, input="Hi", max_output_tokens=4)
    names = [name for name, _ in events]
    assert names[:2] == ["chat.start", "model_load.start"]
    assert all(d["model_instance_id"] == JIT_MODEL for n, d in events
               if n.startswith("model_load.") or n == "chat.start")
    loading = names[1:names.index("model_load.end") + 1]
    assert loading == ["model_load.start"] + ["model_load.progress"] * (len(loading) - 2) \
        + ["model_load.end"]
    shares = [d["progress"] for n, d in events if n == "model_load.progress"]
    assert shares and shares == sorted(shares) and shares[-1] == 1.0
    end = dict(events)["model_load.end"]
    assert end["load_time_seconds"] > 0
    assert names.index("prompt_processing.start") > names.index("model_load.end")
    result = events[-1][1]["result"]
    assert_result(result, JIT_MODEL)
    assert result["stats"]["model_load_time_seconds"] == end["load_time_seconds"]
    again = chat(server, model=JIT_MODEL, input="Hi", max_output_tokens=4).json()
    assert "model_load_time_seconds" not in again["stats"]


def test_context_length_reloads_the_model_with_it(server):
    result = chat(server, model=JIT_MODEL, input="Hi", max_output_tokens=2,
                  context_length=1536).json()
    assert result["stats"]["model_load_time_seconds"] > 0
    loaded = httpx.get(f"{server.origin}/api/v1/models", timeout=30).json()["data"]
    instance = next(i for m in loaded for i in m["loaded_instances"] if i["id"] == JIT_MODEL)
    assert instance["config"]["context_length"] == 1536
    again = chat(server, model=JIT_MODEL, input="Hi", max_output_tokens=2,
                 context_length=1536).json()
    assert "model_load_time_seconds" not in again["stats"]


def test_an_mcp_server_that_is_down_is_an_error_event_and_the_chat_goes_on(server, model):
    events = chat_events(server, model=model, input="Hi", max_output_tokens=4,
                         integrations=["mcp/down"])
    names = [name for name, _ in events]
    error = dict(events)["error"]["error"]
    assert error["type"] == "mcp_connection_error" and error["message"]
    assert names.index("error") < names.index("prompt_processing.start")
    assert names[-1] == "chat.end"
    assert_result(events[-1][1]["result"], model)  # answered without the server's tools


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"input": "Hi"}, 400, "model"),
    ({"model": "m", "input": 3}, 400, "input"),
    ({"model": "m", "input": "Hi", "reasoning": "extreme"}, 400, "reasoning"),
    ({"model": "m", "input": "Hi", "previous_response_id": "resp_nothing"}, 404,
     "previous_response_id"),
    ({"model": "m", "input": "Hi", "integrations": [{
        "type": "ephemeral_mcp", "server_label": "x", "server_url": "http://127.0.0.1:9/mcp"}]},
     403, "integrations"),
    ({"model": "m", "input": "Hi", "integrations": ["mcp/undeclared"]}, 400, "integrations"),
])
def test_mistakes_are_4xx_in_openai_envelope(server, model, body, status, param):
    reply = chat(server, **body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and error["param"].startswith(param)
    assert chat(server, model=model, input="Hi", max_output_tokens=1).status_code == 200


def test_a_chat_continues_after_a_restart(tmp_path):
    first = ServerProcess("--parallel", "1", home=tmp_path)
    try:
        reply = chat(first, model="m", input="My name is Zebulon. Say OK.",
                     max_output_tokens=4, temperature=0).json()
    finally:
        first.stop()
    second = ServerProcess("--parallel", "1", "--log-prompts", home=tmp_path)
    try:
        follow_up = chat(second, model="m", input="What is my name?", max_output_tokens=4,
                         previous_response_id=reply["response_id"])
        assert follow_up.status_code == 200, follow_up.text
        # The logged prompt, quoted as Python's repr quotes it.
        prompts = [line for line in second.log().splitlines()
                   if "prompt '" in line or 'prompt "' in line]
        assert "My name is Zebulon. Say OK." in prompts[-1]
        assert prompts[-1].index("Zebulon") < prompts[-1].index("What is my name?")
        chained = chat(second, model="m", input="And again?", max_output_tokens=2,
                       previous_response_id=follow_up.json()["response_id"]).json()
        assert chained["stats"]["input_tokens"] > follow_up.json()["stats"]["input_tokens"]
    finally:
        second.stop()
