"""Nothing is lost on restart: stored Responses survive a stop and a kill -9, and a
server killed without cleaning up is seen as stopped and can be started again."""

from __future__ import annotations

import json
import subprocess
import sys

import openai

from lmserve.api.openai.response_store import ResponseStore, StoredResponse
from tests.server_process import ServerProcess


def _client(proc: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)


def _lmserve(proc: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmserve", *args], env=proc.env,
                          capture_output=True, text=True, timeout=60)


def test_store_persists_in_sqlite_and_stays_bounded(tmp_path):
    path = tmp_path / "responses.sqlite3"
    store = ResponseStore(path, capacity=2)
    for rid in ("a", "b", "c"):
        store.put(StoredResponse({"id": rid, "output": []}, [{"role": "user"}]))
    store.close()
    reopened = ResponseStore(path, capacity=2)
    assert len(reopened) == 2 and reopened.get("a") is None
    assert reopened.get("c").context == [{"role": "user"}]
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_responses_survive_a_restart_and_a_kill(tmp_path):
    proc = ServerProcess("--parallel", "1", home=tmp_path)
    try:
        first = _client(proc).responses.create(
            model="local-model", input="My name is Ada. Say OK.", max_output_tokens=4)
    finally:
        proc.stop()

    proc = ServerProcess("--parallel", "1", home=tmp_path)
    follow_up = _client(proc).responses.create(
        model="local-model", input="What is my name?", previous_response_id=first.id,
        max_output_tokens=4)
    assert follow_up.usage.input_tokens > first.usage.input_tokens  # the history came back
    proc.proc.kill()  # kill -9: no cleanup, server.json stays behind
    proc.proc.wait()
    state = json.loads((tmp_path / "server.json").read_text())
    assert state["pid"] == proc.proc.pid

    status = _lmserve(proc, "server", "status")
    assert status.returncode == 1 and "not running" in status.stdout

    proc = ServerProcess("--parallel", "1", home=tmp_path)
    try:
        assert _client(proc).responses.retrieve(follow_up.id).id == follow_up.id
        again = _lmserve(proc, "server", "status")
        assert again.returncode == 0 and f"pid {proc.proc.pid}" in again.stdout
    finally:
        proc.stop()
