"""Log-softmax in float32 against a float64 reference, on rows as large as Gemma's."""

from __future__ import annotations

import numpy as np
import pytest

from lmserve.engine.logprobs import log_softmax_at


def _reference(logits: np.ndarray) -> np.ndarray:
    wide = logits.astype(np.float64)
    return wide - (wide.max() + np.log(np.exp(wide - wide.max()).sum()))


@pytest.mark.parametrize("n_vocab", [49_152, 262_144])
@pytest.mark.parametrize("top_n", [0, 1, 5, 20, 40])
def test_matches_float64_log_softmax(n_vocab, top_n):
    rng = np.random.default_rng(n_vocab + top_n)
    # Logits as models give them: a wide spread, a few far above the rest.
    logits = (rng.standard_normal(n_vocab) * 4).astype(np.float32)
    logits[rng.choice(n_vocab, 8, replace=False)] += 25
    expected = _reference(logits)
    token = int(rng.integers(n_vocab))

    logprob, top = log_softmax_at(logits, token, top_n)

    assert logprob == pytest.approx(expected[token], abs=1e-5)
    assert [t for t, _ in top] == list(np.argsort(-expected, kind="stable")[:top_n])
    for t, value in top:
        assert value == pytest.approx(expected[t], abs=1e-5)


def test_logits_are_left_as_they_were():
    logits = np.linspace(-10, 10, 1000, dtype=np.float32)
    before = logits.copy()
    log_softmax_at(logits, 3, 5)
    assert np.array_equal(logits, before)


def test_one_scratch_row_serves_vocabularies_of_any_size():
    small = np.array([0.0, 1.0, 2.0], dtype=np.float32)
    log_softmax_at(np.zeros(100_000, dtype=np.float32), 0, 3)
    logprob, top = log_softmax_at(small, 2, 3)
    assert [t for t, _ in top] == [2, 1, 0]
    assert logprob == pytest.approx(_reference(small)[2], abs=1e-6)
