"""The limit the server is measured against: a bare llama.cpp decode loop, no HTTP.

N sequences share one context (one KV stream each, as in the server's engine). Sequence i
gets prompt i (cycling through the prompts given); all are prefilled in one batch, then
each step decodes one token per sequence with a single llama_decode and samples per
sequence with the chain a server builds for `temperature: 0, ignore_eos: true`: a logit
bias banning the end-of-generation tokens, then greedy. Every sequence produces exactly
the requested number of tokens, so the figure is pure compute.

    python bench/raw_engine.py [--model PATH] [--seqs 1,8] [--tokens 128] [--threads N]
                               [--kv-unified]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp as L

DEFAULT_PROMPT = "Write a long story about a robot who learns to paint."
CTX_PER_SEQ = 4096  # the same per-slot context as the served benchmark
N_BATCH = 512
kv_unified = False  # --kv-unified: one KV stream shared by all sequences


def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass  # llama.cpp narrates every load step; the numbers are what matter here


_log_callback = L.llama_log_callback(_quiet_log)  # kept alive for the C side


def _token_text(vocab, token: int) -> str:
    return L.llama_vocab_get_text(vocab, token).decode() if token >= 0 else ""


def chat_prompt_tokens(model, user: str) -> list[int]:
    """The user message rendered as the server renders it (the model's Jinja template)."""
    from lmserve.models.chat_template import ChatTemplate

    vocab = L.llama_model_get_vocab(model)
    source = L.llama_model_chat_template(model, None)
    bos = _token_text(vocab, L.llama_vocab_bos(vocab))
    template = ChatTemplate(source.decode() if source else None, bos_token=bos,
                            eos_token=_token_text(vocab, L.llama_vocab_eos(vocab)))
    text = template.render([{"role": "user", "content": user}])
    # A template that writes the BOS token itself must not get a second one.
    return tokenize(vocab, text.encode(), add_special=not (bos and text.startswith(bos)))


def tokenize(vocab, text: bytes, *, add_special: bool) -> list[int]:
    cap = len(text) + 16
    toks = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, text, len(text), toks, cap, add_special, True)
    if n < 0:
        raise RuntimeError("tokenization failed")
    return list(toks[:n])


def _new_context(model, n_seqs: int, n_threads: int):
    cp = L.llama_context_default_params()
    cp.n_ctx = n_seqs * CTX_PER_SEQ
    cp.n_batch = N_BATCH
    cp.n_ubatch = N_BATCH
    cp.n_seq_max = n_seqs
    cp.kv_unified = kv_unified
    cp.n_threads = n_threads
    cp.n_threads_batch = n_threads
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise RuntimeError(f"could not create a context for {n_seqs} sequences")
    return ctx


def _put(batch, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits


def _decode(ctx, batch, n: int) -> None:
    batch.n_tokens = n
    ret = L.llama_decode(ctx, batch)
    if ret != 0:
        raise RuntimeError(f"llama_decode failed with status {ret}")


def _prefill(ctx, batch, prompts: list[list[int]]) -> list[int]:
    """Sequence i gets prompts[i]; returns each sequence's logits index."""
    if sum(len(p) for p in prompts) > N_BATCH:
        raise ValueError("the prompts do not fit in one batch")
    n = 0
    last: list[int] = []
    for seq, prompt in enumerate(prompts):
        for pos, tok in enumerate(prompt):
            _put(batch, n, tok, pos, seq, pos == len(prompt) - 1)
            n += 1
        last.append(n - 1)
    _decode(ctx, batch, n)
    return last


def eog_tokens(model) -> list[int]:
    vocab = L.llama_model_get_vocab(model)
    return [t for t in range(L.llama_vocab_n_tokens(vocab)) if L.llama_vocab_is_eog(vocab, t)]


def _greedy_chain(model, banned: list[int]):
    """What lmserve builds for temperature 0 and ignore_eos: the bias, then greedy."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    biases = (L.llama_logit_bias * len(banned))(
        *(L.llama_logit_bias(t, float("-inf")) for t in banned))
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_logit_bias(n_vocab, len(banned),
                                                                     biases))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
    return chain


def measure(model, prompts: list[list[int]], n_seqs: int, n_tokens: int, n_threads: int
            ) -> dict[str, Any]:
    """Prefill n_seqs prompts (cycling through `prompts`) and decode n_tokens for each;
    timings of one fresh context."""
    ctx = _new_context(model, n_seqs, n_threads)
    batch = L.llama_batch_init(N_BATCH, 0, 1)
    banned = eog_tokens(model)
    chains = [_greedy_chain(model, banned) for _ in range(n_seqs)]
    seq_prompts = [prompts[s % len(prompts)] for s in range(n_seqs)]
    try:
        # Warm-up: the first decode allocates compute buffers; keep it out of the timings.
        _prefill(ctx, batch, seq_prompts[:1])
        L.llama_memory_clear(L.llama_get_memory(ctx), True)

        t0 = time.perf_counter()
        idx = _prefill(ctx, batch, seq_prompts)
        tokens = [L.llama_sampler_sample(chains[s], ctx, idx[s]) for s in range(n_seqs)]
        t1 = time.perf_counter()
        pos = [len(p) for p in seq_prompts]
        for _ in range(n_tokens - 1):  # the first token came from the prefill logits
            for s in range(n_seqs):
                _put(batch, s, tokens[s], pos[s], s, True)
                pos[s] += 1
            _decode(ctx, batch, n_seqs)
            tokens = [L.llama_sampler_sample(chains[s], ctx, s) for s in range(n_seqs)]
        t2 = time.perf_counter()
    finally:
        for chain in chains:
            L.llama_sampler_free(chain)
        L.llama_batch_free(batch)
        L.llama_free(ctx)
    decoded = n_seqs * (n_tokens - 1)
    prompt_tokens = sum(len(p) for p in seq_prompts)
    return {
        "n_seqs": n_seqs,
        "prompt_tokens": prompt_tokens,
        "tokens_per_seq": n_tokens,
        "prefill_s": t1 - t0,
        "prefill_tok_s": prompt_tokens / (t1 - t0),
        "decode_s": t2 - t1,
        "decode_tok_s": decoded / (t2 - t1),
        "decode_tok_s_per_seq": (n_tokens - 1) / (t2 - t1),
        # Output tokens over prefill plus decode: what a server's aggregate measures.
        "end_to_end_tok_s": n_seqs * n_tokens / (t2 - t0),
    }


def run(model_path: str | Path, n_seqs: tuple[int, ...] = (1, 8), n_tokens: int = 128,
        n_threads: int | None = None, user_prompts: Sequence[str] = (DEFAULT_PROMPT,)
        ) -> dict[str, Any]:
    """Measure every sequence count in n_seqs; returns the settings, one row per count and
    the end-of-generation tokens banned."""
    threads = n_threads or os.cpu_count() or 1
    L.llama_log_set(_log_callback, ctypes.c_void_p())
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(model_path).encode(),
                                         L.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {model_path}")
    try:
        prompts = [chat_prompt_tokens(model, p) for p in user_prompts]
        rows = [measure(model, prompts, n, n_tokens, threads) for n in n_seqs]
        banned = eog_tokens(model)
    finally:
        L.llama_model_free(model)
    return {"model": str(model_path), "threads": threads, "user_prompts": list(user_prompts),
            "eog_tokens": banned, "runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="GGUF file [default: the bundled SmolLM2-135M]")
    ap.add_argument("--seqs", default="1,8", help="comma-separated sequence counts")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per sequence")
    ap.add_argument("--threads", type=int, default=None, help="[default: all cores]")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--kv-unified", action="store_true",
                    help="one KV stream for all sequences (the server keeps one each)")
    args = ap.parse_args()
    global kv_unified
    kv_unified = args.kv_unified
    if args.model:
        path = Path(args.model)
    else:
        from lmserve.models.bundled import bundled_model_path

        path = bundled_model_path()
    seqs = tuple(int(x) for x in args.seqs.split(","))
    result = run(path, seqs, args.tokens, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{path.name}, {result['threads']} threads, "
          f"prompt {result['runs'][0]['prompt_tokens']} tokens")
    for r in result["runs"]:
        print(f"  {r['n_seqs']} seq: prefill {r['prefill_tok_s']:7.1f} tok/s, decode "
              f"{r['decode_tok_s']:7.1f} tok/s aggregate "
              f"({r['decode_tok_s_per_seq']:.1f} per sequence)")


if __name__ == "__main__":
    main()
