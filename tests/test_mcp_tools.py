"""MCP tools run by the server: a real MCP server (the official SDK's MCPServer, in
tests/mcp/tool_server.py) over streamable HTTP, SSE and stdio, the bundled model driven
to call it (a forced tool choice), through /v1/responses with the openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from lmserve.mcp import McpPool, McpSettings
from tests.openapi_schema import validate
from tests.server_process import ServerProcess, stop_process
from tests.sse_events import named_events
from tests.test_responses import EVENT_SCHEMAS

TOOL_SERVER = Path(__file__).parent / "mcp" / "tool_server.py"
SECRET = "token-that-must-never-be-logged-4711"

MCP_EVENT_SCHEMAS = {
    **EVENT_SCHEMAS,
    "response.mcp_list_tools.in_progress": "ResponseMCPListToolsInProgressEvent",
    "response.mcp_list_tools.completed": "ResponseMCPListToolsCompletedEvent",
    "response.mcp_list_tools.failed": "ResponseMCPListToolsFailedEvent",
    "response.mcp_call.in_progress": "ResponseMCPCallInProgressEvent",
    "response.mcp_call_arguments.delta": "ResponseMCPCallArgumentsDeltaEvent",
    "response.mcp_call_arguments.done": "ResponseMCPCallArgumentsDoneEvent",
    "response.mcp_call.completed": "ResponseMCPCallCompletedEvent",
    "response.mcp_call.failed": "ResponseMCPCallFailedEvent",
}


class ToolServer:
    """The test MCP server as a process; `calls()` is what it received."""

    def __init__(self, folder: Path, transport: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.calls_file = folder / "calls.jsonl"
        self.headers_file = folder / "headers.txt"
        self.env = {**os.environ, "MCP_CALLS_FILE": str(self.calls_file),
                    "MCP_HEADERS_FILE": str(self.headers_file)}
        port_file = folder / "port"
        self.proc = subprocess.Popen([sys.executable, str(TOOL_SERVER), transport,
                                      str(port_file)], env=self.env,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text()):
            assert self.proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        path = "sse" if transport == "sse" else "mcp"
        self.url = f"http://127.0.0.1:{port_file.read_text()}/{path}"

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        lines = self.calls_file.read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "pid"} for line in lines]

    def stop(self) -> None:
        stop_process(self.proc)


def closed_port_url() -> str:
    """An address where nothing listens: a server that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> ToolServer:
    server = ToolServer(tmp_path_factory.mktemp("mcp-http"), "http")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stdio_calls(tmp_path_factory) -> Path:
    """What the mcp.json stdio server receives (one JSON line per call, with its pid)."""
    return tmp_path_factory.mktemp("mcp-stdio") / "calls.jsonl"


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory, stdio_calls):
    """lmserve with per-request MCP servers allowed, one tool round, a 2 s tool timeout,
    prompts logged (to see what the model's next turn was shown), and the test server
    declared in mcp.json as the stdio server `tools`."""
    home = tmp_path_factory.mktemp("mcp-home")
    (home / "config.toml").write_text(
        "[mcp]\nallow_ephemeral = true\nmax_tool_rounds = 1\ntool_timeout_seconds = 2\n")
    (home / "mcp.json").write_text(json.dumps({"mcpServers": {"tools": {
        "command": sys.executable, "args": [str(TOOL_SERVER), "stdio"],
        "env": {"MCP_CALLS_FILE": str(stdio_calls)}}}}))
    proc = ServerProcess("--log-prompts", home=home)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def mcp_client(mcp_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=mcp_server.base_url, api_key="x", max_retries=0)


def mcp_tool(url: str, **extra) -> dict:
    return {"type": "mcp", "server_label": "calc", "server_url": url,
            "require_approval": "never", **extra}


def forced(name: str) -> dict:
    return {"type": "function", "name": name}


def items(raw: dict, kind: str) -> list[dict]:
    return [item for item in raw["output"] if item["type"] == kind]


def create_raw(client: openai.OpenAI, **kwargs) -> dict:
    reply = client.responses.with_raw_response.create(model="m", temperature=0, **kwargs)
    raw = reply.http_response.json()
    validate(raw, "Response")
    return raw


def test_the_model_calls_an_mcp_tool_and_reads_its_result(mcp_client, mcp_server, tools):
    before = len(tools.calls())
    raw = create_raw(mcp_client, input="What is 2 plus 3?", max_output_tokens=50,
                     tool_choice=forced("add"),
                     tools=[mcp_tool(tools.url, allowed_tools=["add", "lookup"],
                                     headers={"X-Test-Token": SECRET})])
    listing, call, message = raw["output"][0], raw["output"][1], raw["output"][-1]
    validate(listing, "MCPListTools")
    assert listing["server_label"] == "calc" and listing["error"] is None
    assert [t["name"] for t in listing["tools"]] == ["add", "lookup"]  # allowed_tools
    assert listing["tools"][0]["input_schema"]["required"] == ["a", "b"]
    validate(call, "MCPToolCall")
    assert (call["name"], call["server_label"], call["status"]) == ("add", "calc", "completed")
    # The MCP server received exactly the arguments lmserve reports, and answered.
    [received] = tools.calls()[before:]
    arguments = json.loads(call["arguments"])
    assert received == {"tool": "add", "arguments": arguments}
    assert call["output"] == str(arguments["a"] + arguments["b"])
    assert message["type"] == "message"
    # The model's next turn was shown the result.
    assert f"Function result: {call['output']}" in mcp_server.log()
    # The header reached the MCP server, and nothing lmserve logged or answered holds it.
    assert SECRET in tools.headers_file.read_text()
    assert SECRET not in mcp_server.log()
    assert SECRET not in json.dumps(raw)
    assert raw["tools"][0]["headers"] is None
    # A follow-up continues from the stored output, MCP items included.
    follow = create_raw(mcp_client, input="Thanks.", max_output_tokens=5,
                        previous_response_id=raw["id"])
    assert follow["output"][-1]["type"] == "message"


def test_mcp_events_stream_as_openai_sends_them(mcp_client, tools):
    before = len(tools.calls())
    stream = mcp_client.responses.create(
        model="m", input="Look up the capital of France.", temperature=0,
        max_output_tokens=45, stream=True, tool_choice=forced("lookup"),
        tools=[mcp_tool(tools.url, allowed_tools=["lookup"])])
    events = [e.model_dump(mode="json", exclude_unset=True) for e in stream]
    for event in events:
        validate(event, MCP_EVENT_SCHEMAS[event["type"]])
    types = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = types.count("response.mcp_call_arguments.delta")
    assert deltas >= 1
    assert types[:14 + deltas] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed", "response.output_item.done",
        "response.output_item.added", "response.mcp_call.in_progress",
        *["response.mcp_call_arguments.delta"] * deltas,
        "response.mcp_call_arguments.done", "response.mcp_call.completed",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta"]
    final = events[-1]["response"]
    call = final["output"][1]
    streamed = "".join(e["delta"] for e in events
                       if e["type"] == "response.mcp_call_arguments.delta")
    assert call["arguments"] == streamed
    [received] = tools.calls()[before:]
    assert received == {"tool": "lookup", "arguments": json.loads(streamed)}
    assert call["output"] == {"capital_of_france": "Paris"}.get(
        received["arguments"]["key"], f"no fact named {received['arguments']['key']}")
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[1]["item"] == call


def test_a_tool_that_raises_is_a_failed_call(mcp_client, tools):
    raw = create_raw(mcp_client, input="Make it explode.", max_output_tokens=40,
                     tool_choice=forced("explode"),
                     tools=[mcp_tool(tools.url, allowed_tools=["explode"])])
    [call] = items(raw, "mcp_call")
    assert call["status"] == "failed" and call["output"] is None
    assert call["error"]["type"] == "mcp_tool_execution_error"
    assert tools.calls()[-1]["tool"] == "explode"  # it did run, and failed there
    assert raw["output"][-1]["type"] == "message"  # the model still answered


def test_a_tool_that_does_not_answer_in_time_is_a_failed_call(mcp_client, tools):
    started = time.monotonic()
    raw = create_raw(mcp_client, input="Wait for it.", max_output_tokens=30,
                     tool_choice=forced("stall"),
                     tools=[mcp_tool(tools.url, allowed_tools=["stall"])])
    [call] = items(raw, "mcp_call")
    assert call["status"] == "failed"
    assert call["error"]["type"] == "mcp_protocol_error"
    assert "did not answer within 2 s" in call["error"]["message"]
    assert time.monotonic() - started < 50  # the tool itself sleeps 60 s


def test_a_server_that_is_down_is_a_failed_listing(mcp_client):
    raw = create_raw(mcp_client, input="What is 2 plus 3?", max_output_tokens=10,
                     tool_choice=forced("add"), tools=[mcp_tool(closed_port_url())])
    [listing] = items(raw, "mcp_list_tools")
    assert listing["tools"] == [] and "Cannot connect" in listing["error"]
    assert raw["output"][-1]["type"] == "message"  # answered without the tools
    # and the server keeps serving
    again = create_raw(mcp_client, input="Hi", max_output_tokens=5)
    assert again["output"][-1]["type"] == "message"


def test_sse_transport(mcp_client, tmp_path):
    sse = ToolServer(tmp_path, "sse")
    try:
        raw = create_raw(mcp_client, input="What is 2 plus 3?", max_output_tokens=30,
                         tool_choice=forced("add"),
                         tools=[mcp_tool(sse.url, allowed_tools=["add"])])
    finally:
        sse.stop()
    assert items(raw, "mcp_list_tools")[0]["error"] is None
    [call] = items(raw, "mcp_call")
    assert call["status"] == "completed"
    assert sse.calls() == [{"tool": "add", "arguments": json.loads(call["arguments"])}]


@pytest.mark.parametrize(("tool", "status", "param"), [
    ({"require_approval": "always"}, 400, "tools[0].require_approval"),
    ({"server_url": "file:///etc/passwd"}, 400, "tools[0].server_url"),
])
def test_unsupported_mcp_requests_are_400(mcp_client, tools, tool, status, param):
    with pytest.raises(openai.APIStatusError) as caught:
        mcp_client.responses.create(model="m", input="Hi",
                                    tools=[{**mcp_tool(tools.url), **tool}])
    assert caught.value.status_code == status
    assert caught.value.body["param"] == param


def test_per_request_servers_are_refused_unless_allowed(tools):
    strict = ServerProcess("--model", "none")  # the default settings
    try:
        client = openai.OpenAI(base_url=strict.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.responses.create(model="m", input="Hi", tools=[mcp_tool(tools.url)])
        assert caught.value.body["code"] == "mcp_ephemeral_not_allowed"
        assert "mcp.allow_ephemeral" in caught.value.body["message"]
    finally:
        strict.stop()


def test_mcp_json_stdio_servers_start_once_restart_and_stop(tmp_path):
    calls = tmp_path / "calls.jsonl"
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {"tools": {
        "command": sys.executable, "args": [str(TOOL_SERVER), "stdio"],
        "env": {"MCP_CALLS_FILE": str(calls)}}}}))

    def pids() -> list[int]:
        return [json.loads(line)["pid"] for line in calls.read_text().splitlines()]

    async def run() -> None:
        pool = McpPool(McpSettings(), tmp_path / "mcp.json")
        first = await pool.shared("tools")
        assert await pool.shared("tools") is first
        one = await first.call_tool("add", {"a": 1, "b": 2}, timeout=20)
        two = await first.call_tool("lookup", {"key": "capital_of_france"}, timeout=20)
        assert (one.output, two.output) == ("3", "Paris")
        assert pids()[0] == pids()[1]  # one process served both calls
        # A server that dies fails the call in flight, and is started anew for the next.
        os.kill(pids()[0], signal.SIGKILL)
        await asyncio.sleep(0.5)
        gone = await first.call_tool("add", {"a": 1, "b": 2}, timeout=20)
        assert gone.failed
        second = await pool.shared("tools")
        assert second is not first
        assert (await second.call_tool("add", {"a": 2, "b": 2}, timeout=20)).output == "4"
        await pool.close()
        assert not second.alive

    asyncio.run(run())
    assert pids()[-1] != pids()[0]
    with pytest.raises(ProcessLookupError):
        os.kill(pids()[-1], 0)  # stopped by close()


# -- /api/v1/chat: integrations -------------------------------------------------------------


def chat_events(server: ServerProcess, **body) -> list[dict]:
    """A streamed /api/v1/chat as its events' data, read off the wire."""
    with httpx.stream("POST", f"{server.origin}/api/v1/chat", timeout=300,
                      json={"model": "m", "temperature": 0, **body, "stream": True}) as reply:
        assert reply.status_code == 200, reply.read()
        events = named_events(reply)
    for name, data in events:
        assert data["type"] == name
    return [data for _, data in events]


def test_chat_runs_an_mcp_json_stdio_server(mcp_server, stdio_calls):
    events = chat_events(mcp_server, input="What is 2 plus 3?", max_output_tokens=50,
                         integrations=[{"type": "plugin", "id": "mcp/tools",
                                        "allowed_tools": ["add"]}],
                         tool_choice={"type": "function", "name": "add"})
    types = [e["type"] for e in events]
    start = types.index("tool_call.start")
    assert types[start:start + 3] == ["tool_call.start", "tool_call.arguments",
                                      "tool_call.success"]
    assert types[start + 3:].count("message.start") == 1 and types[-1] == "chat.end"
    success = events[start + 2]
    provider = {"type": "plugin", "plugin_id": "mcp/tools"}
    assert events[start]["provider_info"] == success["provider_info"] == provider
    # The stdio server received the arguments lmserve reports, and its answer is shown.
    received = json.loads(stdio_calls.read_text().splitlines()[-1])
    assert received["tool"] == "add" and received["arguments"] == success["arguments"]
    assert success["output"] == str(sum(success["arguments"].values()))
    output = events[-1]["result"]["output"]
    call = next(item for item in output if item["type"] == "tool_call")
    assert call == {**success, "type": "tool_call"}
    assert output[-1]["type"] == "message"
    assert f"Function result: {success['output']}" in mcp_server.log()
    # The process started for this request serves the next one too.
    chat_events(mcp_server, input="Add 1 and 1.", max_output_tokens=40,
                integrations=["mcp/tools"], tool_choice={"type": "function", "name": "add"})
    pids = {json.loads(line)["pid"] for line in stdio_calls.read_text().splitlines()}
    assert len(pids) == 1


def test_chat_runs_an_ephemeral_server_and_reports_its_failures(mcp_server, tools):
    integration = {"type": "ephemeral_mcp", "server_label": "calc", "server_url": tools.url,
                   "allowed_tools": ["explode"], "headers": {"X-Test-Token": SECRET}}
    events = chat_events(mcp_server, input="Make it explode.", max_output_tokens=40,
                         integrations=[integration],
                         tool_choice={"type": "function", "name": "explode"})
    types = [e["type"] for e in events]
    assert "tool_call.success" not in types
    failure = events[types.index("tool_call.failure")]
    assert "explode" in failure["metadata"]["tool_name"] and failure["reason"]
    assert failure["metadata"]["provider_info"] == {"type": "ephemeral_mcp",
                                                    "server_label": "calc"}
    output = events[-1]["result"]["output"]
    invalid = next(item for item in output if item["type"] == "invalid_tool_call")
    assert invalid["reason"] == failure["reason"]
    assert tools.calls()[-1]["tool"] == "explode"
    assert SECRET not in mcp_server.log() and SECRET not in json.dumps(events)
    # the server keeps serving
    again = chat_events(mcp_server, input="Hi", max_output_tokens=4)
    assert again[-1]["type"] == "chat.end"
