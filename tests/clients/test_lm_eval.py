"""lm-evaluation-harness (its own virtualenv, installed without its declared dependencies)
with its `local-completions` model and the remote tokenizer, on a small task read from a
JSONL file: the same scores whether requests go as token ids or as text.

The bundled model answers these easy questions right, but the test holds the two modes
to each other rather than to a score: the log-likelihood of every choice, and the
bits per byte of each question scored whole (where the model's start token must
survive the trip through /detokenize as text).
"""

import math

import pytest

from tests.clients.venvs import run_script


@pytest.fixture(scope="module")
def scores(server) -> dict[str, dict]:
    return run_script("lm-eval", "lm_eval_session.py", server.base_url)


def test_multiple_choice_scores_agree_in_both_modes(scores):
    tokenized, text = scores["tokenized"], scores["text"]
    assert len(tokenized["choice_loglikelihoods"]) == 8
    for a, b in zip(tokenized["choice_loglikelihoods"], text["choice_loglikelihoods"],
                    strict=True):
        assert len(a) == 4 and all(x < 0 for x in a)
        assert a == pytest.approx(b, abs=1e-4)
    assert tokenized["acc"] == text["acc"] and tokenized["acc_norm"] == text["acc_norm"]


def test_rolling_loglikelihood_agrees_in_both_modes(scores):
    tokenized, text = scores["tokenized"]["bits_per_byte"], scores["text"]["bits_per_byte"]
    assert math.isfinite(tokenized) and tokenized > 0
    assert text == pytest.approx(tokenized, rel=1e-4)
