"""What constrained output and logprobs cost: tokens/s of one stream, side by side.

For each model it starts one lmserve server per source tree given (this checkout, and
with --before SRC another one, e.g. an older commit's `src`), all with the same fixed
threads, and sends them in turn, round after round, three kinds of streamed chat request:

- plain: free text, ignore_eos, run to max_tokens;
- json_schema: response_format with a schema too long to finish within max_tokens;
- top_logprobs: plain with logprobs and top_logprobs 5.

Two rates per request: tokens after the first over the wall time from the first content
chunk to the last, and tokens over the CPU time the server process spent on the request
(from /proc; steadier on a shared machine, and with --threads 1 free of threads spinning
while they wait for each other). The report is each kind's median rates and their ratio
to plain, per server, measured in the same run: compare ratios, not rates.

    python bench/sampling_cost.py [--before SRC] [--models smollm2,gemma] [--rounds 5]
                                  [--threads 2] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PROMPT = ("Plan a story about a robot who learns to paint: answer in JSON with a title "
          "and a list of chapter summaries.")
SCHEMA = {  # more items than max_tokens can hold: every request runs to the limit
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": 60},
                   "chapters": {"type": "array", "minItems": 60, "maxItems": 60,
                                "items": {"type": "string", "maxLength": 80}}},
    "required": ["title", "chapters"], "additionalProperties": False,
}
WORKLOADS = {
    "plain": {"ignore_eos": True},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "story", "schema": SCHEMA, "strict": True}}},
    "top_logprobs": {"ignore_eos": True, "logprobs": True, "top_logprobs": 5},
}


def model_path(name: str, cache: Path) -> Path:
    if name == "smollm2":
        from lmserve.models.bundled import bundled_model_path

        return bundled_model_path()
    if name == "gemma":
        from lmserve.models.gemma import assemble_gemma

        return assemble_gemma(cache)
    raise SystemExit(f"unknown model {name!r}: smollm2 or gemma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(src: Path, model: Path, home: Path, threads: int) -> Iterator[tuple[str, int]]:
    """lmserve from the source tree `src` serving `model`; yields its base URL and pid."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src), "LMSERVE_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmserve", "server", "start", "--host", HOST,
         "--port", str(port), "--model", str(model), "--parallel", "1",
         "--context-length", "2048", "--threads", str(threads), "--no-share-cpu"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://{HOST}:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server from {src} did not start; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rates(server: tuple[str, int], workload: str, max_tokens: int,
          seed: int) -> tuple[float, float]:
    """(tokens/s of wall time, tokens per CPU-second of the server) for one request."""
    base, pid = server
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, **WORKLOADS[workload]}
    first = last = 0.0
    cpu_start = cpu_seconds(pid)
    usage: dict[str, Any] = {}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            if any(c["delta"].get("content") for c in chunk.get("choices", [])):
                last = time.perf_counter()
                first = first or last
    cpu = cpu_seconds(pid) - cpu_start
    n = usage.get("completion_tokens", 0)
    if n != max_tokens:
        raise RuntimeError(f"{workload}: {n} tokens, not {max_tokens}")
    return (n - 1) / (last - first), n / cpu


def measure(model: str, sources: dict[str, Path], args: argparse.Namespace,
            tmp: Path) -> dict[str, dict[str, Any]]:
    path = model_path(model, tmp / "models")
    kinds = ("tok_s", "tok_per_cpu_s")
    samples = {name: {k: {w: [] for w in WORKLOADS} for k in kinds} for name in sources}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(
                       server(src, path, tmp / f"{model}-{name}", args.threads))
                   for name, src in sources.items()}
        for srv in servers.values():  # warm up: weights paged in, first-request costs paid
            rates(srv, "plain", args.max_tokens, seed=0)
        for i in range(args.rounds):
            for name, srv in servers.items():
                for workload in WORKLOADS:
                    wall, cpu = rates(srv, workload, args.max_tokens, seed=i + 1)
                    samples[name]["tok_s"][workload].append(wall)
                    samples[name]["tok_per_cpu_s"][workload].append(cpu)
                    print(f"  {model} {name} round {i + 1} {workload}: {wall:.1f} tok/s, "
                          f"{cpu:.1f} tok/CPU-s", flush=True)
    out: dict[str, dict[str, Any]] = {}
    for name, by_kind in samples.items():
        out[name] = {"samples": by_kind}
        for kind, by_workload in by_kind.items():
            medians = {w: statistics.median(r) for w, r in by_workload.items()}
            out[name][kind] = medians
            for workload in ("json_schema", "top_logprobs"):
                out[name][f"{workload}_vs_plain_{kind}"] = (
                    medians[workload] / medians["plain"])
    return out


def report(results: dict[str, Any]) -> str:
    lines = ["| model | server | plain tok/s | json_schema / plain | top_logprobs 5 / plain "
             "| plain tok/CPU-s | json_schema / plain | top_logprobs 5 / plain |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, by_source in results["models"].items():
        for name, r in by_source.items():
            cells = [f"{r[kind]['plain']:.1f} | {r[f'json_schema_vs_plain_{kind}']:.2f} | "
                     f"{r[f'top_logprobs_vs_plain_{kind}']:.2f}"
                     for kind in ("tok_s", "tok_per_cpu_s")]
            lines.append(f"| {model} | {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="another lmserve source tree (its src)")
    parser.add_argument("--models", default="smollm2,gemma")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    sources = {"before": args.before.resolve()} if args.before else {}
    sources["this checkout"] = ROOT / "src"
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "threads": args.threads, "rounds": args.rounds,
        "max_tokens": args.max_tokens, "models": {}}
    with tempfile.TemporaryDirectory(prefix="lmserve-sampling-") as tmp:
        for model in args.models.split(","):
            results["models"][model] = measure(model, sources, args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"sampling_cost-{results['date'][:10]}.json"
    out.write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
