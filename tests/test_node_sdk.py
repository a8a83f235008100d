"""The official openai Node SDK against the real server: list, chat, stream, embeddings,
a bad request, and a client that aborts mid-stream."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_sdk_session(server):
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `make install-test`"
    before = len(server.cancelled())
    run = subprocess.run(["node", "sdk_session.mjs", server.base_url], cwd=NODE_DIR,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    served = server.status()["models"][0]["id"]

    assert seen["models"] == [served]
    chat = seen["chat"]
    assert chat["model"] == served and chat["finish"] == "length" and chat["content"]
    assert chat["usage"]["completion_tokens"] == 8
    stream = seen["stream"]
    assert stream["text"] == chat["content"]  # greedy: streamed and whole agree
    assert stream["finishes"] == ["length"]
    assert stream["usage"]["completion_tokens"] == 8
    assert seen["embeddings"] == [576, 576]
    assert seen["bad_request"] == {"cls": "BadRequestError", "status": 400,
                                   "param": "messages"}
    assert seen["chunks_before_abort"] == 3
    server.wait_idle()
    cancelled = server.cancelled()[before:]
    assert len(cancelled) == 1 and cancelled[0] < 500  # the abort reached the engine
    assert seen["after_abort"] in ("stop", "length")
