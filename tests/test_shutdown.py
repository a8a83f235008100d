"""SIGTERM (what `lmserve server stop` sends) with a stream in flight: the stream ends
cleanly, the process exits, and its state file is gone."""

import signal
import threading
import time

import httpx

from tests.server_process import ServerProcess


def test_sigterm_with_a_stream_in_flight():
    proc = ServerProcess("--parallel", "1")
    lines: list[str] = []

    def stream() -> None:
        body = {"model": "m", "stream": True, "max_tokens": 3000, "temperature": 0.8,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": "Write a very long story."}]}
        try:
            with httpx.stream("POST", proc.base_url + "/chat/completions", json=body,
                              timeout=60) as r:
                lines.extend(r.iter_lines())
        except httpx.HTTPError:
            lines.append("<connection closed>")

    worker = threading.Thread(target=stream)
    worker.start()
    deadline = time.monotonic() + 20
    while proc.status()["models"][0]["busy_slots"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0
    assert time.monotonic() - t0 < 20  # drains for a few seconds, then cancels
    worker.join(30)
    assert not worker.is_alive()
    assert any(line.startswith("data: ") for line in lines)
    assert not (proc.home / "server.json").exists()
    assert "lmserve stopped" in proc.log()
    proc.stop()
