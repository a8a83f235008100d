"""schemathesis hooks for fuzzing lmserve (loaded through SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

Any valid `max_tokens` may ask for a generation as long as the context (minutes on a CPU),
and any valid load may ask for a context of a million tokens in 64 slots. The fuzzer wants
breadth, not long texts or a full memory, so valid sizes are lowered to small valid sizes;
invalid values are left alone for the server to refuse.

With LMSERVE_FUZZ_STATUS_LOG set, the status of every response is appended to that file
(`METHOD PATH STATUS` per line), for the tallies the benchmark reports.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

TOKEN_CAP = 8
_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Routes that generate until the context is full when no limit is given.
_UNBOUNDED = {"/v1/chat/completions": "max_tokens", "/api/v1/chat/completions": "max_tokens",
              "/v1/responses": "max_output_tokens"}
_LOAD_CAPS = {"context_length": 1024, "parallel": 2}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no int


def capped(path: str, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key in _TOKEN_LIMITS:
        if _is_int(out.get(key)) and (out[key] > TOKEN_CAP or out[key] == -1):
            out[key] = TOKEN_CAP
    if path in _UNBOUNDED and all(out.get(key) is None for key in _TOKEN_LIMITS):
        out[_UNBOUNDED[path]] = TOKEN_CAP
    if path == "/api/v1/models/load":
        for key, cap in _LOAD_CAPS.items():
            if _is_int(out.get(key)) and out[key] > cap:
                out[key] = cap
    return out


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() == "POST" and case.body is not None:
        case.body = capped(case.path, case.body)


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    log = os.environ.get("LMSERVE_FUZZ_STATUS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{case.method.upper()} {case.path} {response.status_code}\n")
