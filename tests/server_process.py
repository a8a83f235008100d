"""Starts the real `lmserve` server as a subprocess, as a user would, and stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def lmserve_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean lmserve environment: its own home, config and (empty) library."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")}
    return {**inherited, "LMSERVE_HOME": str(home), **(extra or {})}


def stop_process(proc: subprocess.Popen) -> int:
    """SIGTERM, as `lmserve server stop` sends; a kill if it has not ended in 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServerProcess:
    def __init__(self, *args: str, home: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.home = home or Path(tempfile.mkdtemp(prefix="lmserve-test-"))
        self.env = lmserve_env(self.home, env)
        self.log_path = self.home / "test-server.log"
        self._log = open(self.log_path, "wb")
        # --port 0: the server picks a free port and writes it to its state file.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmserve", "server", "start", "--port", "0", *args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.port = self._wait_ready()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.origin}/v1"

    def _wait_ready(self, timeout: float = 120) -> int:
        state_path = self.home / "server.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                state = json.loads(state_path.read_text())
                if state["pid"] == self.proc.pid:
                    return int(state["port"])
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def status(self) -> dict:
        return httpx.get(f"{self.origin}/api/v1/status", timeout=10).json()

    def wait_idle(self, timeout: float = 10) -> dict:
        """Polls until no slot is busy and nothing is queued; returns the last status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            model = status["models"][0]
            if (model["busy_slots"] == 0 and model["queued"] == 0) \
                    or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def cancelled(self) -> list[int]:
        """Generated token counts of the requests the engine has cancelled, in order."""
        return [int(n) for n in re.findall(r"cancelled: .*? generated (\d+) tok", self.log())]

    def stop(self) -> int:
        code = stop_process(self.proc)
        self._log.close()
        return code
