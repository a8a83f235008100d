"""`lmserve get` and POST /api/v1/models/download against a local stand-in for the Hub,
serving a real GGUF: downloaded, listed, loaded just in time and chatted with; cancelled
downloads resume from the bytes they kept, in the same process or after a restart."""

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
from tests.fakehub import FakeHub, make_gguf
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def hub():
    data = bundled_model_path().read_bytes()
    with FakeHub() as hub:
        hub.add_repo("test-org/SmolLM2-Mirror-GGUF", {"smollm2-mirror.Q4_1.gguf": data})
        hub.add_repo("test-org/Other-GGUF", {"other.Q4_1.gguf": data})
        for name in ("Cancel", "Discard", "Restart"):
            hub.add_repo(f"test-org/{name}-GGUF", {f"{name.lower()}.Q4_1.gguf": make_gguf(
                3_000_000, seed=len(name))})
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


HELD = 1_000_000  # bytes the stand-in sends before it goes silent


def _start(origin: str, model: str) -> dict:
    r = httpx.post(origin + "/api/v1/models/download", json={"model": model}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _wait(origin: str, job: dict, until) -> dict:
    deadline = time.monotonic() + 120
    while not until(job):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = httpx.get(origin + f"/api/v1/models/download/status/{job['job_id']}",
                        timeout=10).json()
    return job


def _cancel(origin: str, job: dict, **body: bool) -> httpx.Response:
    return httpx.post(origin + f"/api/v1/models/download/cancel/{job['job_id']}",
                      json=body or None, timeout=60)


def test_cancel_keeps_the_bytes_and_the_next_download_resumes(server, hub):
    hub.hold(after_bytes=HELD)
    job = _start(server.origin, "test-org/Cancel-GGUF")
    assert job["resumed_from_bytes"] == 0
    _wait(server.origin, job, lambda j: j["downloaded_bytes"] == HELD)
    again = _start(server.origin, "test-org/Cancel-GGUF")
    assert again["job_id"] == job["job_id"]  # one writer per file: the running job
    cancelled = _cancel(server.origin, job)
    hub.release()
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"  # stopped already, though the hub stalled
    assert cancelled.json()["downloaded_bytes"] == HELD
    assert _cancel(server.origin, job).json()["status"] == "cancelled"  # idempotent

    resumed = _start(server.origin, "test-org/Cancel-GGUF")
    assert resumed["job_id"] != job["job_id"] and resumed["resumed_from_bytes"] == HELD
    resumed = _wait(server.origin, resumed, lambda j: j["status"] != "downloading")
    assert resumed["status"] == "completed", resumed
    assert hub.file_requests("cancel.Q4_1.gguf")[-1].headers["range"] == f"bytes={HELD}-"
    done = _cancel(server.origin, resumed)
    assert done.status_code == 409 and done.json()["error"]["code"] == "download_completed"
    assert _cancel(server.origin, {"job_id": "nope"}).status_code == 404
    bad = _cancel(server.origin, job, discard="yes")  # type: ignore[arg-type]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "discard"


def test_cancel_with_discard_deletes_the_partial_file(server, hub):
    hub.hold(after_bytes=HELD)
    job = _start(server.origin, "test-org/Discard-GGUF")
    _wait(server.origin, job, lambda j: j["downloaded_bytes"] == HELD)
    cancelled = _cancel(server.origin, job, discard=True).json()
    hub.release()
    assert cancelled["status"] == "cancelled" and cancelled["downloaded_bytes"] == 0
    restarted = _start(server.origin, "test-org/Discard-GGUF")
    assert restarted["resumed_from_bytes"] == 0
    _wait(server.origin, restarted, lambda j: j["status"] != "downloading")
    assert "range" not in hub.file_requests("discard.Q4_1.gguf")[-1].headers


def test_a_download_cut_by_a_restart_resumes_in_the_next_process(hub, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "LMSERVE_MODELS_DIR": str(tmp_path)}
    hub.hold(after_bytes=HELD)
    first = ServerProcess("--model", "none", env=env)
    try:
        job = _start(first.origin, "test-org/Restart-GGUF")
        _wait(first.origin, job, lambda j: j["downloaded_bytes"] == HELD)
    finally:
        first.stop()
        hub.release()
    second = ServerProcess("--model", "none", env=env)
    try:
        job = _start(second.origin, "test-org/Restart-GGUF")
        assert job["resumed_from_bytes"] == HELD
        job = _wait(second.origin, job, lambda j: j["status"] != "downloading")
        assert job["status"] == "completed", job
        assert hub.file_requests("restart.Q4_1.gguf")[-1].headers["range"] == f"bytes={HELD}-"
    finally:
        second.stop()


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
