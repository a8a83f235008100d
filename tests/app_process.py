"""Runs `lmserve app --no-browser` as a real process in its own lmserve home."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.server_process import lmserve_env, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = lmserve_env(home)
        self._log = open(home / "app.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "lmserve", "app", "--no-browser"],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.state = self._wait_ready()
        self.url = self.state["app_url"]
        # what `lmserve app` opens: the address with the app's session token
        self.page_url = f"{self.url}#token={self.state['app_token']}"

    def _wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited early:\n{self.log()}")
            try:
                state = json.loads((self.home / "server.json").read_text())
                if state["pid"] == self.proc.pid:
                    return state
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the app was not ready after {timeout} s:\n{self.log()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lmserve", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def log(self) -> str:
        self._log.flush()
        return (self.home / "app.log").read_text(errors="replace")

    def stop(self) -> int:
        code = stop_process(self.proc)
        self._log.close()
        return code
