"""A server beside other busy processes decodes with fewer threads instead of spinning."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import openai
import pytest

from tests.server_process import ServerProcess

CORES = len(os.sched_getaffinity(0))
THREADS_LINE = re.compile(r"decoding with (\d+) of (\d+) threads")


def stream_tokens(server: ServerProcess, n: int) -> int:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="local-model", messages=[{"role": "user", "content": "Tell me a story."}],
        max_tokens=n, stream=True, extra_body={"ignore_eos": True})
    return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)


@pytest.mark.skipif(CORES < 2, reason="one core leaves no thread to give up")
def test_busy_cores_take_threads_away() -> None:
    # (Not run with --no-share-cpu: on busy cores that decode can stall for minutes.)
    server = ServerProcess("--parallel", "1", "--context-length", "512", "--threads", str(CORES))
    # One busy process per core: as much CPU as another server's decode threads take.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(CORES)]
    try:
        assert stream_tokens(server, 200) > 0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        server.stop()
    log = server.log_path.read_text(errors="replace")
    changes = [(int(used), int(of)) for used, of in THREADS_LINE.findall(log)]
    assert changes, log
    used, of = changes[0]
    assert of == CORES, log  # out of the threads it was started with
    assert 1 <= used < CORES, log  # it gave some up, and kept at least one
