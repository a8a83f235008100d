"""A CI-sized slice of the soak (bench/soak.py runs 200 clients for minutes): 30 clients
for 20 s of chats, streams, abandoned streams, embeddings and invalid requests, with a
second instance loaded and unloaded halfway. No errors, nothing busy afterwards, RSS
within its bound, no traceback in the log, a clean exit."""

from __future__ import annotations

import asyncio

from tests.soak_load import broken_promises, soak


def test_soak_slice_keeps_every_promise() -> None:
    result = asyncio.run(soak(clients=30, duration_s=20, seed=7,
                              server_args=["--parallel", "4", "--max-queue", "16"]))
    assert broken_promises(result) == [], result
    assert result["completed"] >= 1, result
    outcomes = result["outcomes"]
    assert outcomes.get("invalid_refused", 0) > 0 and outcomes.get("disconnected", 0) > 0
    assert any(step.startswith("unloaded") for step in result["load_unload"]), result
