"""Per-request sampling parameters and the llama.cpp sampler built from them.

A grammar is checked after sampling, not applied before it (as llama.cpp's common
sampler does): the chain samples from the model's logits as if unconstrained, and only
that one token is checked against the grammar. Only when the grammar rejects it are the
candidates rebuilt, masked by the grammar over the whole vocabulary and sampled again.
Most tokens of a constrained reply are what the model would have picked anyway, so the
whole-vocabulary grammar pass (the costly part) runs only for the few that are not.
"""

from __future__ import annotations

import ctypes
import math
import random
from dataclasses import dataclass

import llama_cpp as L
import numpy as np

from lmserve.engine.llama import LlamaModel

# llama_token_data as numpy sees it, so one vectorised copy fills the candidates.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(L.llama_token_data)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token, bias); -inf bans a token
    grammar: str | None = None  # GBNF; output is constrained to it
    ignore_eos: bool = False  # ban end-of-generation tokens: run to max_tokens

    @property
    def uses_penalties(self) -> bool:
        return (
            self.repeat_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


class Sampler:
    """One request's sampler: a llama.cpp chain and, for constrained output, a grammar."""

    def __init__(self, chain, grammar, n_vocab: int) -> None:
        self._chain = chain
        self._grammar = grammar
        self.n_resampled = 0  # tokens the grammar rejected and that were sampled again
        if grammar:
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._candidates = np.zeros(n_vocab, dtype=_TOKEN_DATA)
            self._candidates_array = L.llama_token_data_array(
                self._candidates.ctypes.data_as(L.llama_token_data_p), n_vocab, -1, False)
            self._one = L.llama_token_data()
            self._one_array = L.llama_token_data_array(ctypes.pointer(self._one), 1, -1, False)

    def sample(self, ctx, i_batch: int) -> int:
        """The next token from the logits at `i_batch`, accepted into the sampler."""
        if not self._grammar:
            return L.llama_sampler_sample(self._chain, ctx, i_batch)
        token = self._pick(ctx, i_batch, self._chain)
        if not self.allows(token):
            self.n_resampled += 1
            token = self._pick(ctx, i_batch, self._grammar, self._chain)
        L.llama_sampler_accept(self._grammar, token)
        L.llama_sampler_accept(self._chain, token)
        return token

    def allows(self, token: int) -> bool:
        """Whether the grammar, in its current state, lets `token` come next."""
        self._one.id, self._one.logit, self._one.p = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        L.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        return self._one.logit != -math.inf

    def _pick(self, ctx, i_batch: int, *samplers) -> int:
        """Apply `samplers` in turn to all the logits at `i_batch`; the selected token."""
        n_vocab = len(self._ids)
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i_batch), shape=(n_vocab,))
        # Samplers sort and truncate the array in place: rebuild it whole every time.
        cand = self._candidates
        cand["id"] = self._ids
        cand["logit"] = logits
        cand["p"] = 0.0
        array = self._candidates_array
        array.size, array.selected, array.sorted = n_vocab, -1, False
        for sampler in samplers:
            L.llama_sampler_apply(sampler, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise RuntimeError("the sampler chain selected no token")
        return int(array.data[array.selected].id)

    def close(self) -> None:
        for sampler in (self._chain, self._grammar):
            if sampler:
                L.llama_sampler_free(sampler)
        self._chain = self._grammar = None


def build_sampler_chain(params: SamplingParams, model: LlamaModel,
                        history: list[int]) -> Sampler:
    """A sampler for one request; `history` primes the penalty window only."""
    grammar = None
    if params.grammar:
        grammar = L.llama_sampler_init_grammar(model.vocab, params.grammar.encode(), b"root")
        if not grammar:
            raise ValueError("The output grammar could not be parsed.")
    try:
        chain = _build_chain(params, model, history)
    except Exception:
        if grammar:
            L.llama_sampler_free(grammar)
        raise
    return Sampler(chain, grammar, model.n_vocab)


def _build_chain(params: SamplingParams, model: LlamaModel, history: list[int]):
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    n_vocab = model.n_vocab
    bias = params.logit_bias
    if params.ignore_eos:
        bias += tuple((t, float("-inf")) for t in model.eog_tokens)
    try:
        if bias:
            biases = (L.llama_logit_bias * len(bias))(
                *(L.llama_logit_bias(t, b) for t, b in bias))
            add(chain, L.llama_sampler_init_logit_bias(n_vocab, len(biases), biases))
        if params.uses_penalties:
            penalties = L.llama_sampler_init_penalties(
                n_vocab, params.penalty_last_n, params.repeat_penalty,
                params.frequency_penalty, params.presence_penalty,
            )
            # Primed here, not through the chain: a grammar must not see the prompt.
            for token in history[-params.penalty_last_n:]:
                L.llama_sampler_accept(penalties, token)
            add(chain, penalties)
        if params.temperature <= 0.0:
            add(chain, L.llama_sampler_init_greedy())
        else:
            if params.top_k > 0:
                add(chain, L.llama_sampler_init_top_k(params.top_k))
            if params.top_p < 1.0:
                add(chain, L.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(chain, L.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, L.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None else random.getrandbits(32)
            add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    except Exception:
        L.llama_sampler_free(chain)
        raise
    return chain


def free_sampler_chain(sampler: Sampler | None) -> None:
    if sampler is not None:
        sampler.close()
