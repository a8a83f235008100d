"""Bad model files and loads too big for memory are refused with a clear 400, while the
model already loaded keeps streaming; none of them can take the server down."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from gguf import GGUFReader

from lmserve.models.bundled import bundled_model_path
from lmserve.models.file_check import _trial_load
from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"


def _patched(dest: Path, key: str, value: int | bytes) -> Path:
    """A copy of the bundled model with one metadata value overwritten in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(bundled_model_path(), dest)
    reader = GGUFReader(dest, "r+")
    part = reader.fields[key].parts[-1]
    if isinstance(value, bytes):
        part[:] = np.frombuffer(value, dtype=np.uint8)
    else:
        part[0] = value
    del reader  # flushes the memory map
    return dest


@pytest.fixture(scope="module")
def bad_library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-models")
    whole = bundled_model_path().read_bytes()
    (root / "bad" / "truncated").mkdir(parents=True)
    (root / "bad" / "truncated" / "truncated.gguf").write_bytes(whole[: len(whole) // 2])
    (root / "bad" / "text").mkdir(parents=True)
    (root / "bad" / "text" / "notes.gguf").write_text("These are my notes, not a model.\n")
    _patched(root / "bad" / "layers" / "layers.gguf", "llama.block_count", 100_000)
    # a valid header naming an architecture llama.cpp does not know: only a load tells
    _patched(root / "bad" / "arch" / "arch.gguf", "general.architecture", b"zzzzz")
    return root


@pytest.fixture(scope="module")
def faults(bad_library):
    proc = ServerProcess("--parallel", "2", "--context-length", "1024",
                         env={"LMSERVE_MODELS_DIR": str(bad_library)})
    yield proc
    proc.stop()


BAD = {
    "bad/truncated": "truncated",
    "bad/text": "not a GGUF file",
    "bad/layers": "claims 100,000 layers",
    "bad/arch": "unknown model architecture: 'zzzzz'",
}


class _BackgroundStream(threading.Thread):
    """A SmolLM2 stream that runs while bad loads happen, until told to stop."""

    def __init__(self, proc: ServerProcess) -> None:
        super().__init__()
        self.proc = proc
        self.pieces = 0
        self.error: Exception | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        client = openai.OpenAI(base_url=self.proc.base_url, api_key="x", max_retries=0)
        try:
            with client.chat.completions.create(
                    model=SMOL, messages=[{"role": "user", "content": "Count to a million."}],
                    max_tokens=1000, stream=True, extra_body={"ignore_eos": True}) as stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        self.pieces += 1
                    if self.stopping.is_set():
                        return
        except Exception as exc:  # reported by the test
            self.error = exc

    def wait_for_pieces(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.pieces < count and self.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.error is None and self.pieces >= count, (self.error, self.pieces)


def test_bad_files_get_a_clear_400_while_another_model_streams(faults):
    stream = _BackgroundStream(faults)
    stream.start()
    try:
        stream.wait_for_pieces(1)
        for key, reason in BAD.items():
            r = httpx.post(f"{faults.origin}/api/v1/models/load", json={"model": key},
                           timeout=300)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["code"] == "model_load_failed" and error["param"] == "model"
            assert reason in error["message"]
            # a request naming it would load it just in time: the same error, OpenAI's shape
            jit = httpx.post(f"{faults.base_url}/chat/completions", timeout=300, json={
                "model": key, "messages": [{"role": "user", "content": "Hi"}]})
            assert jit.status_code == 400
            assert jit.json()["error"]["code"] == "model_load_failed"
        stream.wait_for_pieces(stream.pieces + 2)  # still streaming after all of them
    finally:
        stream.stopping.set()
        stream.join(60)
    assert faults.proc.poll() is None
    loaded = httpx.get(f"{faults.origin}/api/v1/status", timeout=10).json()["models"]
    assert [m["id"] for m in loaded] == [SMOL]


def test_listing_marks_unreadable_files_and_goes_on(faults):
    httpx.post(f"{faults.origin}/api/v1/models/load", json={"model": "bad/arch"}, timeout=120)
    listed = {m["key"]: m for m in
              httpx.get(f"{faults.origin}/api/v1/models", timeout=30).json()["data"]}
    assert listed[SMOL]["error"] is None
    for key, reason in BAD.items():
        assert reason in listed[key]["error"]
    # /v1/models lists what can serve a request
    served = httpx.get(f"{faults.base_url}/models", timeout=30).json()["data"]
    assert {m["id"] for m in served} == {SMOL}

    ls = subprocess.run([sys.executable, "-m", "lmserve", "ls", "--port", str(faults.port)],
                        env=faults.env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert "bad/truncated cannot be loaded: it is truncated" in ls.stdout
    assert SMOL in ls.stdout
    load = subprocess.run([sys.executable, "-m", "lmserve", "load", "bad/text",
                           "--port", str(faults.port)],
                          env=faults.env, capture_output=True, text=True, timeout=60)
    assert load.returncode != 0 and "not a GGUF file" in load.stdout + load.stderr


def test_a_llama_cpp_abort_ends_only_the_child(bad_library, tmp_path):
    # llama.cpp asserts (SIGABRT) on a layer count past its limit; the header check
    # refuses such a file first, and the trial load shows why it must not reach llama.cpp
    reason = _trial_load(bad_library / "bad" / "layers" / "layers.gguf")
    assert reason is not None and "crashed" in reason and "SIGABRT" in reason
    assert _trial_load(bundled_model_path()) is None


def test_too_large_for_the_machine_is_refused_before_loading(faults):
    r = httpx.post(f"{faults.origin}/api/v1/models/load", timeout=60, json={
        "model": SMOL, "identifier": "huge", "context_length": 1_000_000, "parallel": 64})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "model_too_large"
    assert "needs about" in error["message"] and "this machine has only" in error["message"]


def test_memory_budget_is_checked_before_the_load(tmp_path):
    (tmp_path / "config.toml").write_text("[models]\nmemory_budget_mb = 50\n")
    proc = ServerProcess("--model", "none", home=tmp_path)
    try:
        r = httpx.post(f"{proc.origin}/api/v1/models/load", json={"model": SMOL}, timeout=60)
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "model_too_large"
        assert "needs about" in message and "memory budget of 50 MB" in message
        jit = httpx.post(f"{proc.base_url}/completions", timeout=60,
                         json={"model": SMOL, "prompt": "Hi", "max_tokens": 2})
        assert jit.status_code == 400 and jit.json()["error"]["code"] == "model_too_large"
        assert proc.status()["models"] == []
        assert "loaded " not in proc.log()  # nothing was loaded, then evicted
    finally:
        proc.stop()
