"""What chunked prompt reading costs on this machine, measured below the server: a bare
llama.cpp loop, no HTTP, no Python sampling.

Sequence 0 reads a long prompt in chunks of C tokens. Beside it, S running streams each
put one decode token into every batch (as the engine's tick does). For each C the script
reports the longest and median time of one decode (a running stream's token gap) and the
time to read the whole prompt, against reading it alone in full batches. The ratios show
the floor any prefill budget reaches here: a small chunk bounds the gap, but each decode
has a fixed cost and a small batch uses the cores less well, so the prompt takes longer.

    python bench/prefill_chunks.py [--chunks 32,64,128,256,512] [--prompt-tokens 2000]
                                   [--streams 3] [--threads N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time

import llama_cpp as L
from raw_engine import _log_callback, _new_context, _put, tokenize

from lmserve.models.bundled import bundled_model_path

N_BATCH = 512


def read_prompt(model, prompt: list[int], chunk: int, streams: int, threads: int
                ) -> tuple[float, list[float]]:
    """Seconds to read `prompt` in chunks beside `streams` decoding sequences, and the
    duration of every decode (each one a gap between the streams' tokens)."""
    ctx = _new_context(model, streams + 1, threads)
    batch = L.llama_batch_init(N_BATCH, 0, 1)
    try:
        pos = [0] * (streams + 1)
        warm = prompt[:16]  # the streams' own short prompts; also warms the buffers
        n = 0
        for seq in range(1, streams + 1):
            for tok in warm:
                _put(batch, n, tok, pos[seq], seq, False)
                pos[seq] += 1
                n += 1
        if n:
            batch.n_tokens = n
            L.llama_decode(ctx, batch)
        gaps: list[float] = []
        t0 = time.perf_counter()
        read = 0
        while read < len(prompt):
            n = 0
            for seq in range(1, streams + 1):  # one token per running stream
                _put(batch, n, warm[0], pos[seq], seq, True)
                pos[seq] += 1
                n += 1
            part = prompt[read:read + min(chunk, N_BATCH - streams)]  # as the engine caps it
            for tok in part:
                _put(batch, n, tok, pos[0], 0, False)
                pos[0] += 1
                n += 1
            read += len(part)
            batch.logits[n - 1] = True
            batch.n_tokens = n
            t = time.perf_counter()
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            gaps.append(time.perf_counter() - t)
        return time.perf_counter() - t0, gaps
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", default="32,64,128,256,512")
    ap.add_argument("--prompt-tokens", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    L.llama_log_set(_log_callback, ctypes.c_void_p())
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(bundled_model_path()).encode(),
                                         L.llama_model_default_params())
    vocab = L.llama_model_get_vocab(model)
    text = " ".join(f"item{i} is filed under shelf {i % 17}." for i in range(400))
    prompt = tokenize(vocab, text.encode(), add_special=True)[:args.prompt_tokens]
    chunks = [int(c) for c in args.chunks.split(",")]
    print(f"{len(prompt)}-token prompt, {args.streams} running streams, "
          f"{args.threads} threads, best of {args.rounds} rounds")
    print("| chunk | longest gap | median gap | prompt read beside streams | "
          "alone, same chunk | alone, 512 | beside streams / alone 512 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for chunk in chunks:
        best = None
        for _ in range(args.rounds):
            # Side by side in one round: beside streams, alone in this chunk, alone whole.
            beside, gaps = read_prompt(model, prompt, chunk, args.streams, args.threads)
            alone_chunk, _ = read_prompt(model, prompt, chunk, 0, args.threads)
            alone, _ = read_prompt(model, prompt, N_BATCH, 0, args.threads)
            row = (beside / alone, beside, alone_chunk, alone, max(gaps),
                   statistics.median(gaps))
            best = row if best is None or row[0] < best[0] else best
        ratio, beside, alone_chunk, alone, longest, median = best
        print(f"| {chunk} | {longest:.3f} s | {median:.3f} s | {beside:.2f} s | "
              f"{alone_chunk:.2f} s | {alone:.2f} s | {ratio:.2f} |")
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
