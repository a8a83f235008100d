"""Two lmserve servers on one machine: does each keep its pace when the other is busy?

Starts two real servers (`lmserve server start`, the bundled model, the same threads) per
mode on free loopback ports, each with its own home folder. Each repetition streams one
chat request (ignore_eos, a fixed max_tokens) from the first server alone, then from the
second alone, then from both at once; the modes are interleaved within each repetition
so that a busy spell of the machine hits them alike. A stream's rate is its content
chunks over the time from its first chunk to its last; side by side, only the window in
which both streams were running counts.

Modes: `share` is the default (`--share-cpu`: fewer threads while other processes are
busy), `fixed` is `--no-share-cpu` (every thread, always: the behaviour before).

Prints each repetition, saves the JSON under bench/results/ and writes its section of
docs/benchmarks.md (between its own markers, inside the notes that bench/serve.py keeps).

    python bench/cpu_sharing.py [--reps 5] [--tokens 256] [--modes share,fixed] [--no-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
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
SECTION_START, SECTION_END = "<!-- cpu-sharing -->", "<!-- /cpu-sharing -->"
MODES = {"share": "--share-cpu", "fixed": "--no-share-cpu"}
TARGET_PAIR_RATIO = 0.40  # each of the two keeps this share of its rate alone
TARGET_ALONE_RATIO = 0.95  # the default's rate alone against the fixed thread count
STALL_S = 45.0  # a stream still running after this long is cut off and counted as is
PROMPT = "Write a long story about a robot who learns to paint."


def server_cmd(port: int, threads: int, mode: str) -> list[str]:
    return [sys.executable, "-m", "lmserve", "server", "start", "--host", serve.HOST,
            "--port", str(port), "--parallel", "1", "--context-length", "2048",
            "--threads", str(threads), MODES[mode]]


@contextlib.contextmanager
def server_pair(mode: str, threads: int, log_dir: Path) -> Iterator[list[dict[str, Any]]]:
    """Two servers of one mode, each with its own lmserve home (state file, library)."""
    procs: list[subprocess.Popen] = []
    servers: list[dict[str, Any]] = []
    try:
        for i in range(2):
            port = serve.free_port()
            home = Path(tempfile.mkdtemp(prefix=f"lmserve-cpu-{mode}-{i}-"))
            env = {k: v for k, v in os.environ.items() if not k.startswith("LMSERVE_")}
            env["LMSERVE_HOME"] = str(home)
            log_path = log_dir / f"{mode}-{i}.log"
            with open(log_path, "wb") as log:
                procs.append(subprocess.Popen(server_cmd(port, threads, mode), env=env,
                                              stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL))
            base = f"http://{serve.HOST}:{port}"
            model = serve.wait_ready(base, procs[-1], log_path)
            servers.append({"name": f"{mode}-{'AB'[i]}", "base": base, "model": model,
                            "log": log_path})
        yield servers
    finally:
        for proc in procs:
            serve.stop_process(proc)


async def stream(client: httpx.AsyncClient, server: dict[str, Any], tokens: int,
                 seed: int) -> list[float]:
    """Times of the content chunks of one streamed chat; cut off after STALL_S."""
    body = {"model": server["model"], "messages": [{"role": "user", "content": PROMPT}],
            "stream": True, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.8,
            "seed": seed}
    times: list[float] = []
    deadline = time.perf_counter() + STALL_S
    async with client.stream("POST", f"{server['base']}/v1/chat/completions",
                             json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"{server['name']}: HTTP {resp.status_code}: "
                               f"{(await resp.aread())[:200]!r}")
        async for line in resp.aiter_lines():
            now = time.perf_counter()
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                chunk = json.loads(line[5:])
                if any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                    times.append(now)
            if now > deadline:
                break  # leaving the block closes the connection, which cancels it
    return times


def rate(times: list[float], start: float | None = None, end: float | None = None
         ) -> float | None:
    """Chunks per second from the first chunk to the last, within [start, end] if given."""
    inside = [t for t in times if (start is None or t >= start) and (end is None or t <= end)]
    if len(inside) < 2 or inside[-1] <= inside[0]:
        return None
    return (len(inside) - 1) / (inside[-1] - inside[0])


async def measure_alone(client: httpx.AsyncClient, server: dict[str, Any], tokens: int,
                        seed: int) -> float | None:
    return rate(await stream(client, server, tokens, seed))


async def measure_pair(client: httpx.AsyncClient, servers: list[dict[str, Any]],
                       tokens: int, seed: int) -> list[float | None]:
    runs = await asyncio.gather(*(stream(client, s, tokens, seed + i)
                                  for i, s in enumerate(servers)))
    if not all(runs):
        return [None, None]
    # Only while both streams run: whichever ends first leaves the other alone.
    start, end = max(r[0] for r in runs), min(r[-1] for r in runs)
    return [rate(r, start, end) for r in runs]


def thread_changes(log_path: Path) -> int:
    """How often a server changed its thread count (its log says so each time)."""
    try:
        return len(re.findall(r"decoding with \d+ of \d+ threads", log_path.read_text()))
    except OSError:
        return 0


async def run_reps(pairs: dict[str, list[dict[str, Any]]], reps: int, tokens: int
                   ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    timeout = httpx.Timeout(connect=10.0, read=STALL_S + 30, write=30.0, pool=30.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        for servers in pairs.values():  # warm-up: first requests pay one-off costs
            for s in servers:
                await stream(client, s, 8, 0)
        for rep in range(reps):
            busy = serve.cpu_busy_share()
            for mode, servers in pairs.items():
                seed = 1000 * rep
                alone = [await measure_alone(client, s, tokens, seed) for s in servers]
                pair = await measure_pair(client, servers, tokens, seed)
                row = {"rep": rep + 1, "mode": mode, "cpu_busy_before": busy,
                       "alone": alone, "pair": pair,
                       "ratios": [p / a if p and a else None for p, a in zip(pair, alone,
                                                                             strict=True)]}
                rows.append(row)
                print(f"rep {rep + 1} {mode:5}: alone {fmt_rates(alone)}, side by side "
                      f"{fmt_rates(pair)} tok/s, ratios {fmt_ratios(row['ratios'])}",
                      flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        alone = [a for r in mine for a in r["alone"] if a]
        ratios = [x for r in mine for x in r["ratios"]]
        summary[mode] = {
            "alone_median": statistics.median(alone) if alone else None,
            "pair_sum_median": statistics.median(
                [sum(r["pair"]) for r in mine if all(r["pair"])] or [0.0]),
            "worst_ratio": None if None in ratios or not ratios else min(ratios),
        }
    share, fixed = summary.get("share"), summary.get("fixed")
    if share:
        share["pair_target_met"] = (share["worst_ratio"] is not None
                                    and share["worst_ratio"] >= TARGET_PAIR_RATIO)
    if share and fixed and share["alone_median"] and fixed["alone_median"]:
        share["alone_vs_fixed"] = share["alone_median"] / fixed["alone_median"]
        share["alone_target_met"] = share["alone_vs_fixed"] >= TARGET_ALONE_RATIO
    return summary


def fmt_rates(values: list[float | None]) -> str:
    return " + ".join("stalled" if v is None else f"{v:.1f}" for v in values)


def fmt_ratios(values: list[float | None]) -> str:
    return ", ".join("–" if v is None else f"{v:.2f}" for v in values)


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["summary"]
    lines = [
        SECTION_START,
        "## Two servers on one machine",
        "",
        f"Generated by `bench/cpu_sharing.py` on {result['date']} "
        f"({result['reps']} repetitions{', commit ' + m['commit'] if m.get('commit') else ''}; "
        f"{m['cpu']}, {m['cores']} cores). Two lmserve servers, {result['threads']} threads "
        f"each, one streamed chat each (`ignore_eos`, {result['tokens']} tokens): each alone, "
        "then both at once; tok/s from a stream's first chunk to its last, side by side "
        f"only while both run; a stream still running after {STALL_S:.0f} s is cut off "
        "there. `share` is the default (`server.share_cpu = true`), `fixed` "
        "is `--no-share-cpu`, the thread count of earlier versions.",
        "",
        "| rep | mode | CPU busy before | A alone | B alone | A beside B | B beside A "
        "| ratios |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        busy = r["cpu_busy_before"]
        cells = [fmt_rates([v]) for v in (*r["alone"], *r["pair"])]
        lines.append(f"| {r['rep']} | {r['mode']} | {'–' if busy is None else f'{busy:.0%}'} "
                     f"| {' | '.join(cells)} | {fmt_ratios(r['ratios'])} |")
    lines.append("")
    for mode, v in s.items():
        lines.append(f"- **{mode}**: {fmt_rates([v['alone_median']])} tok/s alone (median), "
                     f"{fmt_rates([v['pair_sum_median']])} tok/s for the pair together "
                     f"(median), worst share of its rate alone {fmt_ratios([v['worst_ratio']])}.")
    share = s.get("share", {})
    if "alone_vs_fixed" in share:
        lines.append(f"- Targets: each keeps >= {TARGET_PAIR_RATIO:.2f} of its rate alone in "
                     f"every repetition: {'met' if share['pair_target_met'] else '**missed**'}; "
                     f"rate alone >= {TARGET_ALONE_RATIO:.2f} of `fixed`: "
                     f"{share['alone_vs_fixed']:.2f}, "
                     f"{'met' if share['alone_target_met'] else '**missed**'}.")
    changes = ", ".join(f"{name} {n}" for name, n in result["thread_changes"].items())
    lines.append(f"- Thread count changes in the servers' logs: {changes}.")
    if result.get("note"):
        lines += ["", result["note"]]
    lines.append(SECTION_END)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="Two lmserve servers on one machine, alone "
                                 "and side by side.")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256, help="max_tokens of each stream")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of each server [default: all cores]")
    ap.add_argument("--modes", default="share,fixed", help="comma-separated: share, fixed")
    ap.add_argument("--note", default="", help="a line added under the table")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        ap.error(f"modes are {', '.join(MODES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    log_dir = Path(tempfile.mkdtemp(prefix="lmserve-cpu-sharing-"))
    with contextlib.ExitStack() as stack:
        pairs = {m: stack.enter_context(server_pair(m, args.threads, log_dir)) for m in modes}
        rows = asyncio.run(run_reps(pairs, args.reps, args.tokens))
        changes = {s["name"]: thread_changes(s["log"]) for ss in pairs.values() for s in ss}
    result = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": serve.machine_info(), "reps": args.reps, "tokens": args.tokens,
        "threads": args.threads, "rows": rows, "summary": summarize(rows, modes),
        "thread_changes": changes, "note": args.note, "server_logs": str(log_dir),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / f"cpu_sharing-{datetime.now():%Y%m%d-%H%M%S}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    for mode, v in result["summary"].items():
        print(f"{mode}: {json.dumps(v)}")
    print(f"thread count changes per server: {changes}")
    if not args.no_docs:
        serve.write_section(REPORT, markdown(result), SECTION_START, SECTION_END)
    print(f"wrote {json_path}" + ("" if args.no_docs else f" and {REPORT}"))


if __name__ == "__main__":
    main()
