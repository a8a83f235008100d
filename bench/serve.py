"""The serving benchmark: lmserve against llama-cpp-python's server and the raw engine.

Starts each server in turn on a free loopback port with the bundled model and the same
threads, sends streaming chat requests at concurrency 1, 2, 4 and 8, timestamps every
content chunk from the raw SSE, then measures lmserve's prefix cache (time to first
token of a long system prompt, cold vs repeated). Writes the numbers as JSON under
bench/results/, a plot to docs/benchmarks.png and the report docs/benchmarks.md.

    python bench/serve.py [--quick] [--skip-peer] [--threads N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import raw_engine  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOST = "127.0.0.1"

MAX_TOKENS = 128
PARALLEL = 8  # lmserve's slots: the highest concurrency measured
CONTEXT = 4096
MIN_REQUESTS = 8  # per concurrency level in a full run
READY_TIMEOUT_S = 300.0
LEVEL_TIMEOUT_S = 900.0
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=30.0)

TARGETS = {  # name: (description, comparison, threshold)
    "single_stream_vs_raw": ("single-stream decode through HTTP / raw 1-sequence decode",
                             ">=", 0.95),
    # Both sides do the same work: 8 prompts prefilled, then 128 tokens each.
    "aggregate8_vs_raw": ("aggregate at 8 concurrent / raw 8 sequences, prefill + decode",
                          ">=", 0.90),
    "aggregate8_vs_peer": ("aggregate at 8 concurrent / llama-cpp-python server at 8",
                           ">=", 2.0),
    "prefix_repeat_vs_cold": ("TTFT with a repeated ~1,500-token system prompt / cold",
                              "<=", 0.20),
}

# Open-ended asks, so that answers run to the token limit rather than stopping early.
PROMPTS = [
    "Write a long story about a robot who learns to paint.",
    "Explain in detail how a steam engine works, step by step.",
    "Describe a journey across a desert, day by day, in vivid detail.",
    "Write a detailed guide to planting and caring for a vegetable garden.",
    "Tell the history of the printing press and how it changed the world.",
    "Write a long letter from a lighthouse keeper to her brother.",
    "Explain how the water cycle works and why it matters for farming.",
    "Describe, in detail, a busy market in an old city at dawn.",
    "Write a story about two friends who build a boat and sail to an island.",
    "Explain how computers store numbers and text, with examples.",
    "Write a detailed recipe for bread and explain each step.",
    "Describe the life of a honeybee colony through the seasons.",
    "Write a long fairy tale about a dragon who is afraid of the dark.",
    "Explain how airplanes fly, covering lift, thrust, drag and weight.",
    "Describe a walk through a forest in autumn, noticing every detail.",
    "Write a story about a detective solving a mystery in a small village.",
]

PREFIX_QUESTIONS = [
    "What should I do when a parcel arrives damaged?",
    "How many days do customers have to return an item?",
    "Who approves a refund above the usual limit?",
    "What do I say to a customer who is upset about a delay?",
    "When does the support desk open on weekends?",
    "How do I log a complaint about a courier?",
    "What is the policy on gift wrapping?",
    "Can a customer pay an invoice in two parts?",
]

TOPICS = ["returns", "refunds", "deliveries", "damaged parcels", "complaints", "gift cards",
           "weekend opening hours", "courier delays", "loyalty points", "invoices"]


# -- measurements -------------------------------------------------------------------------


@dataclass
class RequestResult:
    sent: float
    chunk_times: list[float] = field(default_factory=list)  # one per content chunk
    done: float = 0.0
    usage: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] - self.sent if self.chunk_times else None

    @property
    def tokens(self) -> int:
        """Exact completion tokens when the server reports usage, else content chunks."""
        if self.usage and self.usage.get("completion_tokens") is not None:
            return int(self.usage["completion_tokens"])
        return len(self.chunk_times)

    @property
    def gaps(self) -> list[float]:
        t = self.chunk_times
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    @property
    def decode_tok_s(self) -> float | None:
        """Tokens after the first, over the time from the first chunk to the last."""
        t = self.chunk_times
        if len(t) < 2 or t[-1] <= t[0]:
            return None
        return (self.tokens - 1) / (t[-1] - t[0])


async def stream_chat(client: httpx.AsyncClient, base: str, body: dict[str, Any]
                      ) -> RequestResult:
    """One streaming request, parsed line by line so that each chunk gets its own time."""
    res = RequestResult(sent=time.perf_counter())
    try:
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                res.error = f"HTTP {resp.status_code}: {text[:200]}"
                return res
            async for line in resp.aiter_lines():
                now = time.perf_counter()
                if not line.startswith("data:"):
                    continue  # blank separators, comments and keep-alive pings
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    res.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        res.chunk_times.append(now)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.done = time.perf_counter()
    return res


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int = MAX_TOKENS,
              to_limit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw loop's sampler: greedy; `to_limit` is how this server is told to ignore
    end-of-generation tokens, so that every request is max_tokens long."""
    return {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": max_tokens,
        **(to_limit or {}),
    }


async def run_level(client: httpx.AsyncClient, base: str, model: str, concurrency: int,
                    rounds: int, to_limit: dict[str, Any]) -> dict[str, Any]:
    """`rounds` rounds of `concurrency` requests sent at once; each round waits for the last.
    The first round asks what the raw loop's sequences ask (PROMPTS in order); later rounds
    go on through PROMPTS, so that no prompt is read from the prefix cache."""
    results: list[RequestResult] = []
    cpu0, start = time.process_time(), time.perf_counter()
    for r in range(rounds):
        batch = []
        for i in range(concurrency):
            msgs = [{"role": "user", "content": PROMPTS[(r * concurrency + i) % len(PROMPTS)]}]
            batch.append(stream_chat(client, base, chat_body(model, msgs, to_limit=to_limit)))
        results += await asyncio.wait_for(asyncio.gather(*batch), LEVEL_TIMEOUT_S)
    wall = time.perf_counter() - start
    row = summarize_level(concurrency, rounds, results, wall)
    # The client shares the CPUs with the server: show what it took from them.
    row["client_cpu_s"] = time.process_time() - cpu0
    return row


def summarize_level(concurrency: int, rounds: int, results: list[RequestResult],
                    wall: float) -> dict[str, Any]:
    ok = [r for r in results if r.error is None and r.chunk_times]
    ttfts = [r.ttft for r in ok]
    gaps = [g for r in ok for g in r.gaps]
    rates = [x for r in ok if (x := r.decode_tok_s) is not None]
    tokens = sum(r.tokens for r in ok)
    return {
        "concurrency": concurrency,
        "rounds": rounds,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if r.error})[:5],
        "usage_reported": all(r.usage for r in ok),
        # requests whose usage does not say max_tokens: they did less work than the raw loop
        "short": sum(1 for r in ok if not r.usage
                     or r.usage.get("completion_tokens") != MAX_TOKENS),
        "completion_tokens": tokens,
        "wall_s": wall,
        "aggregate_tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p90_s": percentile(ttfts, 90),
        "itl_p50_ms": _ms(percentile(gaps, 50)),
        "itl_p90_ms": _ms(percentile(gaps, 90)),
        "stream_decode_tok_s_p50": percentile(rates, 50),
    }


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no data."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def bench_server(base: str, model: str, levels: list[int], quick: bool,
                       to_limit: dict[str, Any]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=2 * PARALLEL, max_keepalive_connections=2 * PARALLEL)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=limits) as client:
        # The first decode allocates buffers; keep it out of the numbers.
        warm = await stream_chat(client, base, chat_body(
            model, [{"role": "user", "content": "Say hello."}], max_tokens=8))
        if warm.error:
            raise RuntimeError(f"warm-up request failed: {warm.error}")
        out = []
        for c in levels:
            rounds = 1 if quick else max(2, math.ceil(MIN_REQUESTS / c))
            row = await run_level(client, base, model, c, rounds, to_limit)
            print_level(row)
            out.append(row)
        return out


def system_prompt(nonce: str, n_rules: int = 33) -> str:
    """A made-up staff handbook of about 1,500 tokens, starting with a nonce."""
    lines = [f"Reference {nonce}. You are the support assistant of Harbour & Pine, a small "
             "online shop for kitchenware. Follow the handbook below exactly."]
    for i in range(n_rules):
        topic = TOPICS[i % len(TOPICS)]
        lines.append(
            f"Rule {i + 1}: when a customer writes about {topic}, greet them by name, "
            f"check order number and date, answer within {2 + i % 5} sentences, and log "
            f"the case under code {topic[:3].upper()}-{100 + i}."
        )
    return "\n".join(lines)


async def bench_prefix(base: str, model: str, reps: int) -> dict[str, Any]:
    """TTFT of a long system prompt never seen before vs the same one again."""
    cold: list[RequestResult] = []
    warm: list[RequestResult] = []
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        for r in range(reps):
            system = system_prompt(f"{time.time_ns():x}-{r}")
            for i, into in enumerate((cold, warm)):
                question = PREFIX_QUESTIONS[(2 * r + i) % len(PREFIX_QUESTIONS)]
                msgs = [{"role": "system", "content": system},
                        {"role": "user", "content": question}]
                res = await stream_chat(client, base, chat_body(model, msgs, max_tokens=16))
                if res.error or res.ttft is None:
                    raise RuntimeError(f"prefix request failed: {res.error or 'no content'}")
                into.append(res)
    cold_p50 = statistics.median(r.ttft for r in cold)
    warm_p50 = statistics.median(r.ttft for r in warm)
    return {
        "repetitions": reps,
        "prompt_tokens": _usage_field(cold, "prompt_tokens"),
        "cached_tokens_repeated": _cached(warm),
        "cold_ttft_s": [r.ttft for r in cold],
        "repeated_ttft_s": [r.ttft for r in warm],
        "cold_ttft_p50_s": cold_p50,
        "repeated_ttft_p50_s": warm_p50,
        "ratio": warm_p50 / cold_p50,
    }


def _usage_field(results: list[RequestResult], key: str) -> int | None:
    vals = [r.usage.get(key) for r in results if r.usage]
    return vals[0] if vals else None


def _cached(results: list[RequestResult]) -> int | None:
    vals = [(r.usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            for r in results if r.usage]
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None


def print_level(row: dict[str, Any]) -> None:
    print(f"    c={row['concurrency']}: {row['aggregate_tok_s']:6.1f} tok/s aggregate, "
          f"TTFT p50 {fmt(row['ttft_p50_s'], 3)} s p90 {fmt(row['ttft_p90_s'], 3)} s, "
          f"ITL p50 {fmt(row['itl_p50_ms'], 1)} ms p90 {fmt(row['itl_p90_ms'], 1)} ms "
          f"({row['requests']} requests, {row['failed']} failed)", flush=True)


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(name: str, cmd: list[str], env: dict[str, str], port: int,
                   log_dir: Path) -> Iterator[tuple[str, str]]:
    """Start a server, wait until it lists its model, yield (base URL, model id), stop it."""
    log_path = log_dir / f"{name}.log"
    base = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        model = wait_ready(base, proc, log_path)
        yield base, model
    finally:
        stop_process(proc)


def wait_ready(base: str, proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}:\n"
                               + tail(log_path))
        try:
            r = httpx.get(f"{base}/v1/models", timeout=5)
            if r.status_code == 200 and r.json().get("data"):
                return r.json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not answer /v1/models in time:\n" + tail(log_path))


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def lmserve_cmd(port: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "lmserve", "server", "start", "--host", HOST,
            "--port", str(port), "--parallel", str(PARALLEL),
            "--context-length", str(CONTEXT), "--threads", str(threads)]


def peer_cmd(port: int, threads: int, model_path: Path) -> list[str]:
    # interrupt_requests off: by default a new request cuts the running stream short,
    # which would measure cancellations instead of serving.
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
            "--host", HOST, "--port", str(port), "--n_ctx", str(CONTEXT),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--interrupt_requests", "False", "--verbose", "False"]


# -- the run ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lmserve.models.bundled import bundled_model_path

    model_path = bundled_model_path()
    threads = args.threads or os.cpu_count() or 1
    levels = [1, 8] if args.quick else [1, 2, 4, 8]
    result: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
        "model": model_path.name,
        "threads": threads,
        "settings": {"max_tokens": MAX_TOKENS, "prompts": len(PROMPTS),
                     "parallel": PARALLEL, "context_length": CONTEXT, "levels": levels},
        "servers": {},
        "cpu_busy_before": {},  # other work on the machine shows here
    }
    note_load(result, "raw engine")

    print(f"raw engine: {model_path.name}, {threads} threads", flush=True)
    result["raw_engine"] = raw_engine.run(model_path, (1, PARALLEL), MAX_TOKENS, threads,
                                          PROMPTS[:PARALLEL])
    # llama-cpp-python's server has no ignore_eos: the same ban as a logit bias
    peer_to_limit = {"logit_bias": {str(t): -100 for t in result["raw_engine"]["eog_tokens"]}}
    for row in result["raw_engine"]["runs"]:
        print(f"    N={row['n_seqs']}: prefill {row['prefill_tok_s']:.1f} tok/s, decode "
              f"{row['decode_tok_s']:.1f} tok/s aggregate", flush=True)

    with tempfile.TemporaryDirectory(prefix="lmserve-bench-") as tmp:
        tmp_dir = Path(tmp)
        env = {**os.environ, "LMSERVE_HOME": str(tmp_dir / "home")}
        port = free_port()
        print(f"lmserve on port {port}", flush=True)
        note_load(result, "lmserve")
        with running_server("lmserve", lmserve_cmd(port, threads), env, port,
                            tmp_dir) as (base, model):
            rows = asyncio.run(bench_server(base, model, levels, args.quick,
                                            {"ignore_eos": True}))
            short = sum(r["short"] for r in rows)
            if short:
                raise RuntimeError(f"{short} lmserve requests did not report {MAX_TOKENS} "
                                   "completion tokens despite ignore_eos")
            result["servers"]["lmserve"] = rows
            print("  prefix cache", flush=True)
            note_load(result, "prefix cache")
            result["prefix_cache"] = asyncio.run(
                bench_prefix(base, model, 3 if args.quick else 5))
            print_prefix(result["prefix_cache"])
        if not args.skip_peer:
            port = free_port()
            print(f"llama-cpp-python server on port {port}", flush=True)
            note_load(result, "llama-cpp-python")
            with running_server("peer", peer_cmd(port, threads, model_path), dict(os.environ),
                                port, tmp_dir) as (base, model):
                result["servers"]["llama-cpp-python"] = asyncio.run(
                    bench_server(base, model, levels, args.quick, peer_to_limit))
    result["ratios"] = ratios(result)
    return result


BUSY_SHARE = 0.10  # CPU share used by others above which the figures are not trustworthy


def note_load(result: dict[str, Any], phase: str) -> None:
    """Sample how busy the CPUs are right before a phase, while nothing of ours runs."""
    busy = cpu_busy_share()
    result["cpu_busy_before"][phase] = None if busy is None else round(busy, 3)
    if busy is not None and busy > BUSY_SHARE:
        print(f"  note: the CPUs were {busy:.0%} busy with other work before {phase}; "
              "the numbers will be noisy", flush=True)


def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """Share of all CPU time not idle over a short window, from /proc/stat."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def print_prefix(p: dict[str, Any]) -> None:
    print(f"    {p['prompt_tokens']} prompt tokens: cold TTFT p50 {p['cold_ttft_p50_s']:.3f} s, "
          f"repeated {p['repeated_ttft_p50_s']:.3f} s ({p['cached_tokens_repeated']} cached), "
          f"ratio {p['ratio']:.3f}", flush=True)


def _level(result: dict[str, Any], server: str, c: int) -> dict[str, Any] | None:
    rows = result["servers"].get(server) or []
    return next((r for r in rows if r["concurrency"] == c), None)


def _raw(result: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((r for r in result["raw_engine"]["runs"] if r["n_seqs"] == n), None)


def ratios(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    one, eight = _level(result, "lmserve", 1), _level(result, "lmserve", PARALLEL)
    peer8 = _level(result, "llama-cpp-python", PARALLEL)
    raw1, raw8 = _raw(result, 1), _raw(result, PARALLEL)
    values = {
        "single_stream_vs_raw": _div(one and one["stream_decode_tok_s_p50"],
                                     raw1 and raw1["decode_tok_s"]),
        "aggregate8_vs_raw": _div(eight and eight["aggregate_tok_s"],
                                  raw8 and raw8["end_to_end_tok_s"]),
        "aggregate8_vs_peer": _div(eight and eight["aggregate_tok_s"],
                                   peer8 and peer8["aggregate_tok_s"]),
        "prefix_repeat_vs_cold": (result.get("prefix_cache") or {}).get("ratio"),
    }
    out = {}
    for name, value in values.items():
        desc, op, threshold = TARGETS[name]
        met = None if value is None else (value >= threshold if op == ">=" else
                                          value <= threshold)
        out[name] = {"description": desc, "value": value, "target": f"{op} {threshold:g}",
                     "met": met}
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def machine_info() -> dict[str, Any]:
    import llama_cpp

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    ram_gb = None
    with contextlib.suppress(OSError, AttributeError):
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        ram_gb = round(int(m.group(1)) / 1024**2, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "commit": git_commit(),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# -- outputs ------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tps, ax_ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, rows in result["servers"].items():
        cs = [r["concurrency"] for r in rows]
        ax_tps.plot(cs, [r["aggregate_tok_s"] for r in rows], marker="o", label=server)
        ax_ttft.plot(cs, [r["ttft_p50_s"] for r in rows], marker="o", label=server)
    raw = result["raw_engine"]["runs"]
    ax_tps.plot([r["n_seqs"] for r in raw], [r["decode_tok_s"] for r in raw], marker="s",
                linestyle="--", color="grey", label="raw engine (decode only)")
    ax_tps.set(title="Aggregate output tokens/s", xlabel="concurrent requests",
               ylabel="tokens/s")
    ax_ttft.set(title="Time to first token, p50", xlabel="concurrent requests",
                ylabel="seconds", yscale="log")
    for ax in (ax_tps, ax_ttft):
        ax.set_xticks(result["settings"]["levels"])
        ax.grid(alpha=0.3)
        ax.legend()
    ax_tps.set_ylim(bottom=0)
    fig.suptitle(f"{result['model']}, {result['threads']} threads, "
                 f"{result['machine']['cpu']} ({result['date'][:10]})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
DEFAULT_NOTES = """## What limits it

_To be written from the numbers above._"""

TEMPLATE = """# Benchmarks

Generated by `bench/serve.py` on {date} ({mode} run{commit}).
Figures on a shared machine are noisy: compare the ratios within one run rather than
figures across runs.

## Machine

- CPU: {cpu}, {cores} cores, {ram} GB RAM; {os}
- Python {python}, llama-cpp-python {llama_version}, built with `GGML_NATIVE=OFF` and
  AVX2/FMA/F16C/BMI2 (`scripts/build-llama-wheel.sh`)
- llama.cpp system info: `{system_info}`
- Model: {model}, {threads} threads for every contender
- CPU share used by other work just before each phase: {load}

## How to run

```sh
make bench                       # installs the extras, then runs python bench/serve.py
.venv/bin/python bench/serve.py --quick        # concurrency 1 and 8 only, one round
.venv/bin/python bench/serve.py --skip-peer    # lmserve and the raw engine only
.venv/bin/python bench/raw_engine.py           # the raw engine alone
```

Each server is started in turn on a free loopback port: lmserve with
`--parallel {parallel} --context-length {context}`, and llama-cpp-python's own server
(`python -m llama_cpp.server`, which serves one request at a time) with `--n_ctx {context}`.
At each concurrency level, that many streaming chat requests are sent at once, in rounds
(at least {min_requests} requests per level in a full run), each with its own prompt, greedy
(`temperature: 0`), `max_tokens={max_tokens}` and end-of-generation tokens banned
(`ignore_eos: true` for lmserve, the same ban as a `logit_bias` for llama-cpp-python), so
every request does the raw loop's work: lmserve's `usage` must say {max_tokens} completion
tokens for each. Every content chunk is timestamped from
the raw SSE stream.

- **TTFT**: request sent → first content chunk.
- **ITL**: gap between consecutive content chunks of a stream.
- **Aggregate tok/s**: completion tokens of the level (from `usage`, or content chunks
  where the server reports none) / wall time of the level, prompts and all.
- **Stream decode tok/s**: one stream's tokens after the first / time from its first chunk
  to its last.
- **Raw engine** (`bench/raw_engine.py`): the servers' first round through the llama.cpp
  C API with no server: sequence i gets the prompt of request i, one `llama_decode` per
  step, the sampler chain lmserve builds for these requests (the end-of-generation ban,
  then greedy), {max_tokens} tokens each. Its decode rate is the ceiling.

## Results

![aggregate tokens/s and TTFT vs concurrency](benchmarks.png)

| server | conc. | requests | agg. tok/s | stream tok/s | TTFT p50 | TTFT p90 | ITL p50 | ITL p90 |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{server_rows}

{client_cpu}

Raw engine (prompt tokens of the first sequence: {raw_prompt}):

| sequences | prefill tok/s | decode, aggregate | decode, per sequence | prefill + decode |
|---:|---:|---:|---:|---:|
{raw_rows}

Prefix cache (lmserve): a system prompt of {prefix_tokens} tokens, sent once with a nonce
never seen before (cold), then again with a different user question (repeated),
{prefix_reps} times; `max_tokens=16`.

| | TTFT p50 | all runs |
|---|---:|---|
{prefix_rows}

## Targets

| measure | value | target | |
|---|---:|---:|:---:|
{ratio_rows}

{notes}
"""


def server_rows(result: dict[str, Any]) -> str:
    lines = []
    for server, rows in result["servers"].items():
        for r in rows:
            failed = f" ({r['failed']} failed)" if r["failed"] else ""
            lines.append(
                f"| {server} | {r['concurrency']} | {r['requests']}{failed} "
                f"| {fmt(r['aggregate_tok_s'])} | {fmt(r['stream_decode_tok_s_p50'])} "
                f"| {fmt(r['ttft_p50_s'], 3)} s | {fmt(r['ttft_p90_s'], 3)} s "
                f"| {fmt(r['itl_p50_ms'])} ms | {fmt(r['itl_p90_ms'])} ms |")
    return "\n".join(lines)


def client_cpu_note(result: dict[str, Any]) -> str:
    parts = []
    for server, rows in result["servers"].items():
        wall = sum(r["wall_s"] for r in rows)
        cpu = sum(r.get("client_cpu_s", 0.0) for r in rows)
        parts.append(f"{server} {fmt(100 * cpu / wall if wall else None, 0)}%")
    return ("The benchmark client's own CPU use while streaming, as a share of one core: "
            + ", ".join(parts) + ".")


def raw_rows(result: dict[str, Any]) -> str:
    return "\n".join(
        f"| {r['n_seqs']} | {fmt(r['prefill_tok_s'])} | {fmt(r['decode_tok_s'])} "
        f"| {fmt(r['decode_tok_s_per_seq'])} | {fmt(r['end_to_end_tok_s'])} |"
        for r in result["raw_engine"]["runs"])


def prefix_rows(p: dict[str, Any] | None) -> str:
    if not p:
        return "| not measured | | |"

    def runs(xs: list[float]) -> str:
        return ", ".join(f"{x:.3f}" for x in xs)

    cached = p["cached_tokens_repeated"]
    cached_note = f" ({cached} tokens cached)" if cached is not None else ""
    return "\n".join([
        f"| cold | {p['cold_ttft_p50_s']:.3f} s | {runs(p['cold_ttft_s'])} |",
        f"| repeated{cached_note} | {p['repeated_ttft_p50_s']:.3f} s "
        f"| {runs(p['repeated_ttft_s'])} |",
    ])


def ratio_rows(result: dict[str, Any]) -> str:
    marks = {True: "pass", False: "**miss**", None: "not measured"}
    return "\n".join(
        f"| {r['description']} | {fmt(r['value'], 2)} | {r['target']} | {marks[r['met']]} |"
        for r in result["ratios"].values())


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replaces another benchmark's section (between its start and end markers) in the
    report, or adds it at the end of the kept notes."""
    text = path.read_text()
    pattern = re.escape(start) + r".*?" + re.escape(end)
    if re.search(pattern, text, re.S):
        text = re.sub(pattern, lambda _: section, text, flags=re.S)
    elif NOTES_END in text:
        text = text.replace(NOTES_END, f"\n{section}\n{NOTES_END}")
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    path.write_text(text)


def kept_notes(path: Path) -> str:
    """Everything an existing report has from its notes on (the hand-written notes and the
    sections other benchmarks add after them), so that a rerun keeps it."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    start = text.find(NOTES_START)
    return text[start:].rstrip() if start >= 0 else f"{NOTES_START}\n{DEFAULT_NOTES}\n{NOTES_END}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    m, s, p = result["machine"], result["settings"], result.get("prefix_cache") or {}
    text = TEMPLATE.format(
        date=result["date"], mode=result["mode"],
        commit=f", commit {m['commit']}" if m.get("commit") else "",
        cpu=m["cpu"], cores=m["cores"], ram=fmt(m["ram_gb"], 0), os=m["os"],
        python=m["python"], llama_version=m["llama_cpp_python"],
        system_info=m["llama_cpp_system_info"], model=result["model"],
        threads=result["threads"], parallel=s["parallel"], context=s["context_length"],
        min_requests=MIN_REQUESTS, max_tokens=s["max_tokens"],
        server_rows=server_rows(result), raw_rows=raw_rows(result),
        client_cpu=client_cpu_note(result),
        raw_prompt=result["raw_engine"]["runs"][0]["prompt_tokens"],
        prefix_tokens=p.get("prompt_tokens", "–"), prefix_reps=p.get("repetitions", 0),
        prefix_rows=prefix_rows(p), ratio_rows=ratio_rows(result), notes=kept_notes(path),
        load=", ".join(f"{k} {fmt(v and 100 * v, 0)}%"
                       for k, v in result["cpu_busy_before"].items()),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def print_ratios(result: dict[str, Any]) -> None:
    print("targets:")
    for r in result["ratios"].values():
        mark = {True: "pass", False: "MISS", None: "n/a"}[r["met"]]
        print(f"  {r['description']}: {fmt(r['value'], 2)} (target {r['target']}) {mark}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark lmserve against llama-cpp-python's "
                                 "server and the raw llama.cpp engine.")
    ap.add_argument("--quick", action="store_true",
                    help="one round at concurrency 1 and 8 only (for trials)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every contender [default: all cores]")
    ap.add_argument("--skip-peer", action="store_true",
                    help="do not run llama-cpp-python's server")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results",
                    help="where the JSON results go [default: bench/results]")
    args = ap.parse_args()
    # A SIGTERM to the benchmark still stops the server it started (via the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    result = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.out_dir / f"serve-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    write_plot(result, DOCS / "benchmarks.png")
    write_markdown(result, DOCS / "benchmarks.md")
    print_ratios(result)
    print(f"wrote {json_path}, {DOCS / 'benchmarks.png'}, {DOCS / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
