"""Commands that show help, read the config or talk to a server over HTTP start without
loading llama.cpp or numpy: what a process imports, from `python -X importtime`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from tests.server_process import ServerProcess

HEAVY = {"llama_cpp", "numpy"}


def _heavy_imports(*args: str, home: str) -> set[str]:
    """The llama.cpp and numpy modules a real `python ARGS` process imports; it must
    succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")}
    result = subprocess.run([sys.executable, "-X", "importtime", *args],
                            env={**env, "LMSERVE_HOME": home}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:") and line.count("|") == 2}
    assert "lmserve" in modules  # the importtime report was read
    return {m for m in modules if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize("args", [["--help"], ["server", "start", "--help"],
                                  ["config", "show"], ["config", "path"], ["key", "list"]],
                         ids=" ".join)
def test_local_commands_do_not_load_the_engine(args):
    home = tempfile.mkdtemp(prefix="lmserve-cli-")
    assert _heavy_imports("-m", "lmserve", *args, home=home) == set()


@pytest.mark.parametrize("args", [["ls"], ["ps"], ["default"], ["server", "status"]],
                         ids=" ".join)
def test_commands_talking_to_a_server_do_not_load_the_engine(server: ServerProcess, args):
    assert _heavy_imports("-m", "lmserve", *args, home=str(server.home)) == set()


def test_the_server_itself_loads_the_engine():
    """The check above sees the engine when a process does load it."""
    heavy = _heavy_imports("-c", "import lmserve.server", home=tempfile.mkdtemp())
    assert {"llama_cpp", "numpy"} <= heavy
