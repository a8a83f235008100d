"""Grammar-checked sampling on the real model: the chain picks first, and only a pick
the grammar rejects is sampled again with the grammar applied to the whole vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp as L
import numpy as np
import pytest

from lmserve.engine.sampling import SamplingParams, build_sampler_chain

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def llama():
    from lmserve.engine.llama import LlamaModel
    from lmserve.models.bundled import bundled_model_path

    model = LlamaModel(Path(bundled_model_path()))
    yield model
    model.close()


@pytest.fixture(scope="module")
def ctx(llama):
    """A context that has read PROMPT: its last logits predict the next token."""
    params = L.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_threads = 256, 64, 2
    ctx = L.llama_init_from_model(llama.ptr, params)
    tokens = llama.tokenize(PROMPT, add_special=True, parse_special=False)
    held = (L.llama_token * len(tokens))(*tokens)  # the batch points into it: keep it alive
    assert L.llama_decode(ctx, L.llama_batch_get_one(held, len(tokens))) == 0
    yield ctx
    L.llama_free(ctx)


def _logits(llama, ctx) -> np.ndarray:
    return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(llama.n_vocab,))


def _token(llama, text: str) -> int:
    (token,) = llama.tokenize(text, add_special=False, parse_special=False)
    return token


def _greedy(grammar: str) -> SamplingParams:
    return SamplingParams(temperature=0.0, grammar=grammar)


def test_rejected_first_pick_is_resampled_under_the_grammar(llama, ctx):
    logits = _logits(llama, ctx)
    favourite = llama.token_bytes(int(logits.argmax()))
    assert not favourite.isdigit(), "the model's own pick must be one the grammar rejects"
    # The greedy answer under the grammar: the likeliest token that is all digits.
    digits = np.array([llama.token_bytes(t).isdigit() for t in range(llama.n_vocab)])
    expected = int(np.where(digits, logits, -np.inf).argmax())

    sampler = build_sampler_chain(_greedy("root ::= [0-9]+"), llama, [])
    try:
        token = sampler.sample(ctx, -1)
        assert sampler.n_resampled == 1
        assert token == expected
        # The token was accepted into the grammar: only more digits may follow.
        assert sampler.allows(_token(llama, "7"))
        assert not sampler.allows(_token(llama, "x"))
    finally:
        sampler.close()


def test_accepted_first_pick_is_not_resampled(llama, ctx):
    favourite = int(_logits(llama, ctx).argmax())
    piece = llama.token_bytes(favourite).decode()
    sampler = build_sampler_chain(_greedy(f"root ::= {json.dumps(piece)} [a-z]*"), llama, [])
    try:
        assert sampler.sample(ctx, -1) == favourite
        assert sampler.n_resampled == 0
    finally:
        sampler.close()


def test_a_grammar_that_ends_refuses_more_text(llama, ctx):
    sampler = build_sampler_chain(_greedy('root ::= "1"'), llama, [])
    try:
        token = sampler.sample(ctx, -1)
        assert llama.token_bytes(token) == b"1"
        assert not sampler.allows(token)
        assert sampler.allows(llama.eos)
    finally:
        sampler.close()
