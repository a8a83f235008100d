"""Runs the parts of a client session one after another, so that one failing part
still lets the others report: each gives what it saw, or the error it raised."""

import traceback
from collections.abc import Callable


def run_parts(parts: dict[str, Callable[[], dict]]) -> dict[str, dict]:
    seen = {}
    for name, part in parts.items():
        try:
            seen[name] = part()
        except Exception:  # reported, and named by the test that reads it
            seen[name] = {"error": traceback.format_exc(limit=3)}
    return seen
