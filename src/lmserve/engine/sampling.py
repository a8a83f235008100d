"""Per-request sampling parameters and the llama.cpp sampler chain built from them."""

from __future__ import annotations

import random
from dataclasses import dataclass

import llama_cpp as L

from lmserve.engine.llama import LlamaModel


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


def build_sampler_chain(params: SamplingParams, model: LlamaModel, history: list[int]):
    """A sampler chain for one request; `history` primes the penalty window only."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    vocab, n_vocab = model.vocab, model.n_vocab
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
        if params.grammar:
            grammar = L.llama_sampler_init_grammar(vocab, params.grammar.encode(), b"root")
            if not grammar:
                raise ValueError("The output grammar could not be parsed.")
            add(chain, grammar)
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


def free_sampler_chain(chain) -> None:
    if chain:
        L.llama_sampler_free(chain)
