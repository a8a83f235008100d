"""Runs schemathesis against a live lmserve's own /openapi.json, for the test and the bench.

Checks: no 5xx, every status and content type documented, every response body valid
against its documented schema, headers as documented, invalid requests refused with a
4xx, and the Allow header of 405s. Not `positive_data_acceptance`: a request can follow
the schema and still be refused for what no schema states (a prompt longer than the
context, a JSON schema the grammar cannot enforce, `dimensions` the model lacks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,"
          "negative_data_rejection,unsupported_method,allow_header_conformance")
# The live log never ends; it is a stream to read, not a request to fuzz.
ALWAYS_EXCLUDED = ("/api/v1/logs/stream",)
# Routes that change what is loaded or on disk: slow, and fuzzed in the bench run only.
MACHINE_ROUTES = ("/api/v1/models/load", "/api/v1/models/unload", "/api/v1/models/download",
                  "/api/v1/models/default", "/api/v1/models/{key}")


@dataclass
class FuzzResult:
    exit_code: int
    output: str
    report: dict
    statuses: Counter  # (method path, status) -> responses

    @property
    def cases(self) -> int:
        return self.report.get("test_cases", {}).get("generated", 0)

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    @property
    def failures(self) -> list[dict]:
        # No report at all means schemathesis itself failed: that is a failure too.
        return self.report.get("failures", [{"no report": self.output[-3000:]}])


def run_fuzz(origin: str, *, max_examples: int, seed: int, phases: str = "fuzzing",
             exclude: tuple[str, ...] = MACHINE_ROUTES, include: tuple[str, ...] = (),
             timeout: float = 3600) -> FuzzResult:
    work = Path(tempfile.mkdtemp(prefix="lmserve-fuzz-"))
    report_path, status_log = work / "report.json", work / "statuses.log"
    schemathesis = Path(sys.executable).parent / "schemathesis"
    command = [
        str(schemathesis), "run", f"{origin}/openapi.json",
        "--checks", CHECKS,
        "--phases", phases,
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        "--workers", "1",
        # A slow answer on a busy machine is no failure; a lost one is.
        "--request-timeout", "300",
        "--max-response-time", "300",
        "--no-shrink",
        "--no-color",
        "--report", "json", "--report-json-path", str(report_path),
    ]
    for path in (*ALWAYS_EXCLUDED, *exclude):
        command += ["--exclude-path", path]
    for path in include:
        command += ["--include-path", path]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
           "LMSERVE_FUZZ_STATUS_LOG": str(status_log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    statuses: Counter = Counter()
    if status_log.exists():
        for line in status_log.read_text().splitlines():
            method, path, status = line.rsplit(" ", 2)
            statuses[(f"{method} {path}", int(status))] += 1
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return FuzzResult(done.returncode, done.stdout + done.stderr, report, statuses)
