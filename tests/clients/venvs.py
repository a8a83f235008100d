"""Virtualenvs for third-party clients that cannot share the project's `.venv`
(instructor needs an older jiter than the openai SDK here, lm-eval installs without its
declared dependencies, litellm is heavy): one per client in `.venv-clients/<name>`
beside `.venv`, built from `requirements/<name>.txt` and rebuilt only when those pins
change. The client code runs there as scripts (`scripts/`) that print JSON.

`python -m tests.clients.venvs` builds them all (as `make install-test` does); the
tests call `run_script`, which builds a missing one on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
VENVS = REPO / ".venv-clients"


def _pins(name: str) -> list[Path]:
    """The requirements file, then the one installed with `--no-deps` if the client has it."""
    files = [REQUIREMENTS / f"{name}.txt", REQUIREMENTS / f"{name}.no-deps.txt"]
    return [f for f in files if f.exists()]


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in _pins(name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def client_python(name: str) -> Path:
    """The Python of the client's virtualenv, built or rebuilt if its pins changed."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / "pins.sha256"
    fingerprint = _fingerprint(name)
    if python.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    # uv (a test dependency) builds these from its cache in seconds where pip takes minutes.
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], check=True)
    install = [uv, "pip", "install", "--quiet", "--python", python]
    requirements, *no_deps = _pins(name)
    subprocess.run([*install, "-r", requirements], check=True)
    for path in no_deps:
        subprocess.run([*install, "--no-deps", "-r", path], check=True)
    # Written last: an interrupted build is redone on the next use.
    stamp.write_text(fingerprint)
    return python


# Clients talk to the test server only: no model-price downloads, no hub look-ups.
OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}


def run_script(client: str, script: str, *args: str, timeout: float = 600) -> dict:
    """Runs `scripts/<script>` in the client's virtualenv; returns the JSON it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))}
    run = subprocess.run([str(client_python(client)), str(SCRIPTS / script), *args],
                         env={**env, **OFFLINE}, capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, f"{script} {' '.join(args)} failed:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def part(seen: dict[str, dict], name: str) -> dict:
    """What one part of a script's session saw (scripts/parts.py); fails with its error."""
    assert "error" not in seen[name], seen[name]["error"]
    return seen[name]


def all_clients() -> list[str]:
    return sorted(p.stem for p in REQUIREMENTS.glob("*.txt") if ".no-deps" not in p.name)


if __name__ == "__main__":
    for client in all_clients():
        print(f"client venv {client}: {client_python(client)}", flush=True)
