"""Log-probabilities of one step's tokens, read straight from its raw logits.

They are read for every generated token when a request asks, and a vocabulary row is
large (Gemma: 262,144 logits), so this stays in float32 with no copy of the row beyond
one reused scratch buffer: one max, one shifted exp-sum for the normaliser, and the top
n by n argmax passes, which for the small n asked (at most 20) is several times quicker
than partitioning the whole row.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_ARGMAX_PASSES_UP_TO = 32  # beyond this many top tokens, one partition is quicker

_local = threading.local()  # a scratch row per engine thread: contexts never share one


def _scratch(n: int) -> np.ndarray:
    row = getattr(_local, "row", None)
    if row is None or len(row) < n:
        row = _local.row = np.empty(n, dtype=np.float32)
    return row[:n]


def log_softmax_at(logits: np.ndarray, token: int,
                   top_n: int) -> tuple[float, list[tuple[int, float]]]:
    """The log-probability of `token` and the `top_n` likeliest (token, log-probability),
    likeliest first, under softmax(`logits`), a float32 row of the whole vocabulary."""
    scratch = _scratch(len(logits))
    top = _top_tokens(logits, top_n, scratch) if top_n > 0 else []
    peak = logits.max()
    np.subtract(logits, peak, out=scratch)  # shifted by the max: no exp overflows
    np.exp(scratch, out=scratch)
    log_z = float(peak) + math.log(float(scratch.sum()))
    return float(logits[token]) - log_z, [(t, float(logits[t]) - log_z) for t in top]


def _top_tokens(logits: np.ndarray, n: int, scratch: np.ndarray) -> list[int]:
    if n > _ARGMAX_PASSES_UP_TO:
        best = np.argpartition(logits, -n)[-n:]
        return [int(t) for t in best[np.argsort(-logits[best], kind="stable")]]
    np.copyto(scratch, logits)
    top = []
    for _ in range(min(n, len(scratch))):
        t = int(scratch.argmax())
        top.append(t)
        scratch[t] = -np.inf
    return top
