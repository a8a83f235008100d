"""The running server's state file (address, pid, app token) and what the command line
says about it: kept apart from the server so that commands read it without loading it."""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from lmserve import config
from lmserve.api.host_names import is_loopback, split_host
from lmserve.api_keys import read_keys


def read_state() -> dict[str, Any] | None:
    """The running server's state file, or None when no live server wrote it."""
    path = config.state_file()
    try:
        state = json.loads(path.read_text())
        pid = int(state["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no file, or a server killed without cleaning up (its pid is gone)
    # a stale file's pid may have been reused, even by this very process
    return state if pid != os.getpid() and _is_lmserve(pid) else None


def _is_lmserve(pid: int) -> bool:
    """Whether pid is still a server and not another process that reused the number."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no procfs: trust the live pid
    try:
        return b"lmserve" in cmdline.read_bytes()
    except OSError:
        return False


def write_state(state: dict[str, Any]) -> None:
    # private: with the app running it holds the app's session token
    config.write_atomic(config.state_file(), json.dumps(state, indent=2), mode=0o600)


def remove_state() -> None:
    path = config.state_file()
    with suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def network_warning(host: str, keys_on: bool) -> str | None:
    """The warning for a server others can reach without a key, or None."""
    if keys_on or is_loopback(split_host(host)):
        return None
    return (f"WARNING: the server listens on {host}, reachable from the network, and "
            "needs no API key: anyone who can reach this machine can use and manage its "
            "models. Create a key (`lmserve key create --scope admin`) or start it with "
            "--api-key, or bind to 127.0.0.1.")


def state_network_warning(state: dict[str, Any]) -> str | None:
    """network_warning for a running server, from its state file and the key file."""
    try:
        stored = bool(read_keys())
    except ValueError:  # an unreadable key file keeps keys required (api_keys.KeyRing)
        stored = True
    return network_warning(state["host"], bool(state.get("adhoc_key")) or stored)
