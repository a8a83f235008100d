"""Remote models: a gateway lmserve routes them to two lmserve nodes on loopback, each
started here as a real server, with keys on all three."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.openapi_schema import validate
from tests.server_process import ServerProcess, lmserve_env

GATEWAY_KEY = "gateway-key-5a1f"
NODE_KEY = "node-key-93c2"
NODE_ARGS = ("--parallel", "4", "--context-length", "1024", "--api-key", NODE_KEY)
SERVED = "huggingfacetb/smollm2-135m-instruct"  # the nodes' own id of the bundled model


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lmserve(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "lmserve", *args], capture_output=True,
                          text=True, env=lmserve_env(home, env), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def configure_gateway(home: Path, nodes: list[ServerProcess]) -> None:
    """As a user would: two nodes as one model's upstreams, one node's own list
    discovered, and a model whose only upstream is not running."""
    lmserve(home, "remote", "add", "nodes-smol", "--upstream", f"{nodes[0].origin}/v1",
            "--upstream", nodes[1].origin, "--api-key-env", "NODE_KEY",
            "--upstream-model", SERVED)
    lmserve(home, "remote", "add", nodes[1].origin, "--discover", "--prefix", "node1/",
            "--api-key-env", "NODE_KEY", env={"NODE_KEY": NODE_KEY})
    lmserve(home, "remote", "add", "offline", "--upstream",
            f"http://127.0.0.1:{closed_port()}", "--connect-timeout", "2")
    assert NODE_KEY not in (home / "config.toml").read_text()


class LlamaCppServer:
    """llama-cpp-python's own OpenAI-compatible server on the bundled model: an upstream
    that is not lmserve and has no Messages API."""

    def __init__(self, log_path: Path) -> None:
        from lmserve.models.bundled import bundled_model_path

        self.base_url = f"http://127.0.0.1:{closed_port()}/v1"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
             "--host", "127.0.0.1", "--port", self.base_url.split(":")[2][:-3],
             "--n_ctx", "1024", "--n_threads", "1", "--api_key", NODE_KEY,
             "--interrupt_requests", "False", "--verbose", "False"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._ready, "llama-cpp-python's server answers", timeout=120)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "llama_cpp.server exited"
        try:
            return httpx.get(f"{self.base_url}/models", timeout=5,
                             headers={"Authorization": f"Bearer {NODE_KEY}"}).is_success
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._log.close()


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.nodes = [ServerProcess(*NODE_ARGS), ServerProcess(*NODE_ARGS)]
        self.llama_cpp = LlamaCppServer(tmp / "llama-cpp.log")
        home = tmp / "gateway"
        home.mkdir()
        configure_gateway(home, self.nodes)
        lmserve(home, "remote", "add", "llama-cpp", "--upstream", self.llama_cpp.base_url,
                "--api-key-env", "NODE_KEY")
        self.gateway = ServerProcess("--parallel", "2", "--context-length", "512",
                                     "--api-key", GATEWAY_KEY, home=home,
                                     env={"NODE_KEY": NODE_KEY,
                                          "LMSERVE_REMOTE_HEALTH_INTERVAL": "0.5"})

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url, api_key=GATEWAY_KEY,
                             max_retries=0, timeout=120)

    def remote_entry(self, model_id: str = "nodes-smol") -> dict:
        models = httpx.get(f"{self.gateway.origin}/api/v1/models", timeout=10,
                           headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).json()
        return next(m for m in models["data"] if m["key"] == model_id)

    def health_of(self, node: ServerProcess) -> str:
        upstreams = self.remote_entry()["upstreams"]
        return next(u["health"] for u in upstreams if u["url"] == f"{node.origin}/v1")

    def stop(self) -> None:
        for proc in (self.gateway, *self.nodes, self.llama_cpp):
            proc.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    made = Cluster(tmp_path_factory.mktemp("remote"))
    yield made
    made.stop()


def ids_in_log(node: ServerProcess, prefix: str) -> set[str]:
    return set(re.findall(rf"{prefix}-\d+", node.log()))


def busy_slots(node: ServerProcess) -> int:
    models = httpx.get(f"{node.origin}/api/v1/models", timeout=10,
                       headers={"Authorization": f"Bearer {NODE_KEY}"}).json()["data"]
    return sum(i["busy_slots"] + i["queued"] for m in models for i in m["loaded_instances"])


def wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def request_line(proc: ServerProcess, request_id: str) -> str:
    """The request's log line, written once its answer has been sent."""
    def found() -> str | None:
        return next((line for line in proc.log().splitlines() if request_id in line
                     and "POST /v1/chat/completions 200" in line), None)
    wait_for(lambda: found() is not None, f"the log line of {request_id}")
    return found() or ""


def test_local_and_remote_models_in_one_list(cluster: Cluster) -> None:
    page = cluster.client().models.list()
    validate(page.model_dump(), "ListModelsResponse")  # OpenAI's schema, extras and all
    listed = {m.id: m for m in page.data}
    assert SERVED in listed and listed[SERVED].owned_by == "lmserve"
    remote = listed["nodes-smol"].model_dump()
    assert remote["type"] == "remote" and remote["upstream_model"] == SERVED
    assert [u["url"] for u in remote["upstreams"]] == [f"{n.origin}/v1"
                                                       for n in cluster.nodes]
    assert cluster.client().models.retrieve("nodes-smol").model_dump()["type"] == "remote"
    native = cluster.remote_entry()
    assert native["type"] == "remote" and native["loaded_instances"] == []
    shown = lmserve(cluster.gateway.home, "remote", "ls",
                    env={"LMSERVE_API_KEY": GATEWAY_KEY})
    assert f"{cluster.nodes[0].origin}/v1  up" in shown
    running = lmserve(cluster.gateway.home, "ps", env={"LMSERVE_API_KEY": GATEWAY_KEY})
    assert re.search(rf"nodes-smol\s+{cluster.nodes[1].origin}/v1\s+up", running)


def test_a_discovered_model_is_served_by_its_node(cluster: Cluster) -> None:
    reply = cluster.client().chat.completions.create(
        model=f"node1/{SERVED}", messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2, extra_headers={"X-Request-Id": "found-1"})
    assert reply.choices[0].message.content is not None
    assert ids_in_log(cluster.nodes[1], "found") == {"found-1"}


def test_routing_by_id(cluster: Cluster) -> None:
    client = cluster.client()
    remote = client.chat.completions.create(
        model="nodes-smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
        extra_headers={"X-Request-Id": "route-1"})
    assert remote.choices[0].message.content and remote.usage.completion_tokens <= 3
    local = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
        extra_headers={"X-Request-Id": "route-2"})
    assert local.model == SERVED
    seen = set().union(*(ids_in_log(n, "route") for n in cluster.nodes))
    assert seen == {"route-1"}  # the remote id went upstream, the local one did not
    line = request_line(cluster.gateway, "route-1")
    assert "model=nodes-smol" in line and "completion_tokens=" in line


def test_every_route_passes_through(cluster: Cluster) -> None:
    client = cluster.client()
    done = client.completions.create(model="nodes-smol", prompt="One, two,", max_tokens=2)
    assert done.usage.completion_tokens <= 2
    reply = client.responses.create(model="nodes-smol", input="Hi", max_output_tokens=16)
    assert reply.status in ("completed", "incomplete")
    anthropic = httpx.post(f"{cluster.gateway.origin}/v1/messages", timeout=60,
                           headers={"x-api-key": GATEWAY_KEY},
                           json={"model": "nodes-smol", "max_tokens": 3,
                                 "messages": [{"role": "user", "content": "Hi"}]})
    assert anthropic.status_code == 200 and anthropic.json()["type"] == "message"


def test_llama_cpp_server_upstream_with_messages_bridged(cluster: Cluster) -> None:
    chunks = list(cluster.client().chat.completions.create(
        model="llama-cpp", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
        stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # It has no /v1/messages: the gateway sends a chat completion and answers as Messages.
    claude = anthropic.Anthropic(base_url=cluster.gateway.origin, api_key=GATEWAY_KEY,
                                 max_retries=0)
    message = claude.messages.create(model="llama-cpp", max_tokens=4, system="Be brief.",
                                     messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("max_tokens", "end_turn")
    assert message.usage.output_tokens == 4 or message.stop_reason == "end_turn"
    with claude.messages.stream(model="llama-cpp", max_tokens=4,
                                messages=[{"role": "user", "content": "Hi"}]) as streamed:
        text = "".join(streamed.text_stream)
        final = streamed.get_final_message()
    assert text and final.content[0].text == text
    with pytest.raises(anthropic.BadRequestError):  # refused as /v1/messages would
        claude.messages.create(model="llama-cpp", max_tokens=0,
                               messages=[{"role": "user", "content": "Hi"}])


def test_streams_pass_through_with_usage_counted(cluster: Cluster) -> None:
    chunks = list(cluster.client().chat.completions.create(
        model="nodes-smol", messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=6, stream=True, extra_headers={"X-Request-Id": "stream-1"}))
    assert all(c.usage is None for c in chunks)  # not asked for, so not relayed
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    line = request_line(cluster.gateway, "stream-1")
    assert re.search(r"completion_tokens=[1-6]\b", line)
    metrics = httpx.get(f"{cluster.gateway.origin}/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).text
    assert re.search(r'lmserve_generation_tokens_total\{model="nodes-smol"\} [1-9]', metrics)
    asked = list(cluster.client().chat.completions.create(
        model="nodes-smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
        stream=True, stream_options={"include_usage": True}))
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens <= 3


def test_upstream_errors_in_the_openai_envelope(cluster: Cluster) -> None:
    client = cluster.client()
    with pytest.raises(openai.BadRequestError) as bad:  # the node's 400, passed on
        client.chat.completions.create(model="nodes-smol", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"temperature": "hot"})
    assert bad.value.body["message"]
    with pytest.raises(openai.APIStatusError) as down:  # nothing listens there
        client.chat.completions.create(model="offline", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert down.value.status_code == 502
    assert down.value.body["code"] == "upstream_unreachable"
    assert cluster.remote_entry("offline")["health"] == "down"


def test_keys_are_separate_and_never_logged(cluster: Cluster) -> None:
    node_key_at_gateway = openai.OpenAI(base_url=cluster.gateway.base_url, api_key=NODE_KEY,
                                        max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        node_key_at_gateway.models.list()
    gateway_key_at_node = openai.OpenAI(base_url=cluster.nodes[0].base_url,
                                        api_key=GATEWAY_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        gateway_key_at_node.models.list()
    for proc in (cluster.gateway, *cluster.nodes):
        assert GATEWAY_KEY not in proc.log() and NODE_KEY not in proc.log()


async def _balanced_run(cluster: Cluster, n: int = 40) -> list[int]:
    async with httpx.AsyncClient(timeout=120) as http:
        async def one(i: int) -> int:
            answer = await http.post(
                f"{cluster.gateway.base_url}/chat/completions",
                headers={"Authorization": f"Bearer {GATEWAY_KEY}",
                         "X-Request-Id": f"bal-{i}"},
                json={"model": "nodes-smol", "max_tokens": 4,
                      "messages": [{"role": "user", "content": f"Say {i}."}]})
            return answer.status_code
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_balancing_splits_40_requests_over_two_nodes(cluster: Cluster) -> None:
    statuses = asyncio.run(_balanced_run(cluster))
    assert statuses == [200] * 40
    served = [len(ids_in_log(n, "bal")) for n in cluster.nodes]
    assert sum(served) == 40
    assert all(12 <= n <= 28 for n in served), served  # each node 30-70%
    print(f"40 requests over two nodes: {served[0]} and {served[1]}")


def test_client_hang_up_frees_the_upstream_slot(cluster: Cluster) -> None:
    before = [len(n.cancelled()) for n in cluster.nodes]
    with httpx.stream("POST", f"{cluster.gateway.base_url}/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                      json={"model": "nodes-smol", "max_tokens": 2000, "stream": True,
                            "ignore_eos": True,
                            "messages": [{"role": "user", "content": "Tell a story."}]}
                      ) as answer:
        lines = answer.iter_lines()
        for _ in range(4):
            next(line for line in lines if line.startswith("data:"))
        assert sum(busy_slots(n) for n in cluster.nodes) == 1
    wait_for(lambda: sum(busy_slots(n) for n in cluster.nodes) == 0,
             "the node frees the slot of the stream the client left")
    after = [len(n.cancelled()) for n in cluster.nodes]
    assert sum(after) - sum(before) == 1
    assert all(n < 2000 for n in sum((n.cancelled() for n in cluster.nodes), []))


class StreamWatch(threading.Thread):
    """One long stream through the gateway: whether it started, how it ended."""

    def __init__(self, cluster: Cluster, i: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.i = cluster, i
        self.started = threading.Event()
        self.events: list[dict] = []
        self.ended_with_done = False

    def run(self) -> None:
        with httpx.stream("POST", f"{self.cluster.gateway.base_url}/chat/completions",
                          timeout=120, headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                          json={"model": "nodes-smol", "max_tokens": 150, "stream": True,
                                "ignore_eos": True,
                                "messages": [{"role": "user", "content": f"Story {self.i}"}]}
                          ) as answer:
            for line in answer.iter_lines():
                if line == "data: [DONE]":
                    self.ended_with_done = True
                elif line.startswith("data:"):
                    self.events.append(json.loads(line[5:]))
                    if "choices" in self.events[-1]:
                        self.started.set()

    @property
    def error(self) -> dict | None:
        return next((e["error"] for e in self.events if "error" in e), None)


def test_failover_when_a_node_dies_and_comes_back(cluster: Cluster) -> None:
    victim, survivor = cluster.nodes
    streams = [StreamWatch(cluster, i) for i in range(4)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(60)
    assert busy_slots(victim) >= 1 and busy_slots(survivor) >= 1
    port = victim.port
    victim.proc.kill()
    victim.proc.wait()
    # requests sent now, before any health check, are served by the survivor
    assert asyncio.run(_balanced_run(cluster, 12)) == [200] * 12
    for stream in streams:
        stream.join(120)
    broken = [s for s in streams if s.error is not None]
    whole = [s for s in streams if s.error is None]
    assert broken and whole
    for stream in broken:  # a clean error event, then the stream's end
        assert stream.error["code"] == "upstream_failed" and stream.ended_with_done
    for stream in whole:
        assert stream.events[-1]["choices"][0]["finish_reason"] == "length"
    assert cluster.health_of(victim) == "down"
    print(f"node killed under 4 streams: {len(broken)} ended with the error event, "
          f"{len(whole)} finished; 12 requests sent after the kill all succeeded")
    back = ServerProcess(*NODE_ARGS, "--port", str(port))
    cluster.nodes[0] = back
    victim.stop()
    wait_for(lambda: cluster.health_of(back) == "up", "the restarted node is marked up")
    asyncio.run(_balanced_run(cluster, 8))
    assert ids_in_log(back, "bal"), "the restarted node serves again"
