"""Whether a model file is safe to hand to llama.cpp inside the server.

llama.cpp refuses most malformed files with an error, but aborts the whole process on
some (a GGUF claiming more layers than llama.cpp supports trips an assertion). A file is
therefore checked in two steps before the server loads it:

1. its header, read here in a few milliseconds: a GGUF, complete, with sane counts;
2. a trial load in a child process, where an abort ends only the child. For SmolLM2 on 2
   busy cores it took 0.85-1.0 s (mostly the child's start), against 0.2 s for the load
   itself. The outcome is remembered in `$LMSERVE_HOME/model-checks.json` by path, size
   and modification time, so each version of a file is tried once; a file known to load
   costs only the header read (about 15 ms) after that.

Run as `python -m lmserve.models.file_check PATH`, this module is that child.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from lmserve.config import home_dir, write_atomic

log = logging.getLogger("lmserve.models")

# No model has anywhere near this many layers or tokens of context; a header that says so
# is damaged (llama.cpp aborts on a layer count past its own limit of 512).
MAX_LAYERS = 512
MAX_CONTEXT = 1 << 27
PROBE_TIMEOUT_S = 600


class ModelFileError(RuntimeError):
    """A model file that cannot be loaded: damaged, not a GGUF, or refused by llama.cpp."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"The model file {path} cannot be loaded: {reason}.")
        self.path = path
        self.reason = reason


def header_problem(info: Any, file_size: int) -> str | None:
    """What is wrong with a parsed GGUF header (a library GgufInfo), or None."""
    if info.tensor_count == 0:
        return "it holds no tensors"
    if info.data_end and file_size < info.data_end:
        return (f"it is truncated: its tensors need {info.data_end:,} bytes, "
                f"the file has {file_size:,}")
    arch = info.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        return "its header names no architecture (general.architecture)"
    layers = info.metadata.get(f"{arch}.block_count")
    if isinstance(layers, int) and not 0 < layers <= min(MAX_LAYERS, info.tensor_count):
        return (f"its header claims {layers:,} layers for {info.tensor_count:,} tensors "
                f"(at most {MAX_LAYERS})")
    context = info.metadata.get(f"{arch}.context_length")
    if isinstance(context, int) and not 0 < context <= MAX_CONTEXT:
        return f"its header claims a context of {context:,} tokens"
    return None


def check_header(path: Path) -> None:
    """Raises ModelFileError unless the file is a complete GGUF with a sane header."""
    from lmserve.models.gguf_header import read_gguf_info

    try:
        info = read_gguf_info(path)
        problem = header_problem(info, path.stat().st_size)
    except (OSError, ValueError) as exc:
        problem = str(exc).removeprefix(f"{path}: ")
    if problem:
        raise ModelFileError(path, problem)


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class ModelFileChecks:
    """The outcome of each file's trial load, kept in a JSON file across restarts."""

    def __init__(self, record: Path | None = None) -> None:
        self._record = record
        self._lock = threading.Lock()

    @property
    def record(self) -> Path:
        return self._record or home_dir() / "model-checks.json"

    def version(self) -> int:
        """Changes whenever an outcome is recorded."""
        try:
            return self.record.stat().st_mtime_ns
        except OSError:
            return 0

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def known_problem(self, path: Path) -> str | None:
        """Why this version of the file failed its trial load, if it did."""
        try:
            outcome = self._read().get(str(path.resolve()))
            if outcome and outcome.get("signature") == _signature(path):
                return outcome.get("error")
        except OSError:
            pass
        return None

    def check(self, path: Path) -> None:
        """Raises ModelFileError unless the file is known to load, or loads in a child."""
        path = path.resolve()
        check_header(path)
        signature = _signature(path)
        with self._lock:  # one trial load at a time: each maps the whole file
            outcome = self._read().get(str(path))
            if outcome is None or outcome.get("signature") != signature:
                outcome = {"signature": signature, "error": _trial_load(path)}
                records = self._read()
                records[str(path)] = outcome
                write_atomic(self.record, json.dumps(records, indent=1))
        if outcome["error"]:
            raise ModelFileError(path, outcome["error"])


def _trial_load(path: Path) -> str | None:
    """None when llama.cpp loads the file in a child process, else why it did not."""
    log.info("checking %s in a child process before loading it", path)
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # no gdb backtrace on an abort
    try:
        child = subprocess.run([sys.executable, "-m", __name__, str(path)], env=env,
                               capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not finish reading it in {PROBE_TIMEOUT_S} s"
    if child.returncode == 0:
        return None
    detail = _llama_error(child.stderr)
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        return f"llama.cpp crashed reading it ({name}{': ' + detail if detail else ''})"
    return f"llama.cpp refused it ({detail or 'no reason given'})"


_ERROR_LINE = re.compile(r"error loading model: (.+)|(GGML_ASSERT\(.+\) failed)")


def _llama_error(stderr: str) -> str:
    """The line of llama.cpp's error output that says what is wrong."""
    for match in _ERROR_LINE.finditer(stderr):
        return next(group for group in match.groups() if group).strip()
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _main(path: str) -> int:
    from lmserve.engine.llama import LlamaModel, ModelLoadError

    try:
        LlamaModel(path).close()
    except ModelLoadError:
        return 1  # llama.cpp wrote its reason to stderr
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
