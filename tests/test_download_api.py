"""`lmserve get` and POST /api/v1/models/download against a local stand-in for the Hub,
serving a real GGUF: downloaded, listed, loaded just in time and chatted with."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from lmserve.models.bundled import bundled_model_path
from tests.fakehub import FakeHub
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def hub():
    data = bundled_model_path().read_bytes()
    with FakeHub() as hub:
        hub.add_repo("test-org/SmolLM2-Mirror-GGUF", {"smollm2-mirror.Q4_1.gguf": data})
        hub.add_repo("test-org/Other-GGUF", {"other.Q4_1.gguf": data})
        yield hub


@pytest.fixture(scope="module")
def server(hub, tmp_path_factory):
    models = tmp_path_factory.mktemp("library")
    proc = ServerProcess("--parallel", "1",
                         env={"HF_ENDPOINT": hub.url, "LMSERVE_MODELS_DIR": str(models)})
    yield proc
    proc.stop()


def test_download_job_then_jit_chat(server):
    start = httpx.post(server.origin + "/api/v1/models/download", timeout=60,
                       json={"model": "test-org/SmolLM2-Mirror-GGUF@q4_1"})
    assert start.status_code == 200, start.text
    job = start.json()
    assert job["model_key"] == "test-org/smollm2-mirror-gguf"
    deadline = time.monotonic() + 120
    while job["status"] == "downloading":
        assert time.monotonic() < deadline
        time.sleep(0.2)
        job = httpx.get(server.origin + f"/api/v1/models/download/status/{job['job_id']}",
                        timeout=10).json()
    assert job["status"] == "completed", job
    assert job["downloaded_bytes"] == job["total_size_bytes"] > 90_000_000

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert "test-org/smollm2-mirror-gguf" in {m.id for m in client.models.list().data}
    reply = client.chat.completions.create(model="test-org/smollm2-mirror-gguf", max_tokens=4,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.model == "test-org/smollm2-mirror-gguf"


def test_unknown_job_is_404(server):
    r = httpx.get(server.origin + "/api/v1/models/download/status/nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["param"] == "job_id"


def test_bad_source_is_400(server):
    r = httpx.post(server.origin + "/api/v1/models/download", json={"model": "not a repo"},
                   timeout=10)
    assert r.status_code == 400


def test_what_the_hub_does_not_have_is_404(server):
    # The asker's mistake, not the hub's failure (which is a 502).
    for missing in ("test-org/No-Such-GGUF", "test-org/Other-GGUF@q8_0"):
        r = httpx.post(server.origin + "/api/v1/models/download", json={"model": missing},
                       timeout=60)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "model_not_found"


def test_lmserve_get_then_ls(server, hub, tmp_path):
    env = {**server.env, "LMSERVE_MODELS_DIR": str(tmp_path)}
    got = subprocess.run([sys.executable, "-m", "lmserve", "get", "test-org/Other-GGUF",
                          "--yes"], env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "test-org/other-gguf" in got.stdout
    assert (tmp_path / "test-org" / "Other-GGUF" / "other.Q4_1.gguf").is_file()
    # No server on this port: ls reads the library from disk.
    ls = subprocess.run([sys.executable, "-m", "lmserve", "ls", "--json", "--port", "9"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    keys = {m["key"] for m in json.loads(ls.stdout)}
    assert "test-org/other-gguf" in keys


def test_an_unreachable_hub_is_explained_in_terms_of_the_api():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    proc = ServerProcess("--model", "none", env={"HF_ENDPOINT": f"http://127.0.0.1:{closed}"})
    try:
        r = httpx.post(proc.origin + "/api/v1/models/download", timeout=60,
                       json={"model": "test-org/Other-GGUF"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "hub_unavailable"
        message = r.json()["error"]["message"]
        assert message.startswith(f"Cannot reach the Hugging Face Hub at "
                                  f"http://127.0.0.1:{closed}")
        assert "models folder" in message
        assert "lmserve get" not in message and "lmserve import" not in message
    finally:
        proc.stop()
