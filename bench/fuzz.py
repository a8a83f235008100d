"""The full fuzz: schemathesis against a real server's own /openapi.json, every route.

Starts lmserve on a free loopback port with the bundled model and a stand-in for the
Hugging Face Hub on loopback (tests/fakehub.py, one small repo), so the download route is
fuzzed without leaving the machine; load and unload are fuzzed too, with the sizes a load
may ask for capped by tests/fuzz_hooks.py. Runs the coverage and fuzzing phases until at
least --min-cases cases ran, then checks that the server still answers a chat and is idle,
and writes the tallies as JSON under bench/results/.

    python bench/fuzz.py [--max-examples 10] [--min-cases 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the runner and the fake hub live with the tests

from tests.fakehub import FakeHub, make_gguf  # noqa: E402
from tests.fuzz_run import run_fuzz  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

UNLOAD = "/api/v1/models/unload"


def still_serving(server: ServerProcess, model: str) -> dict:
    # By its id: fuzzed unloads may have left nothing loaded, and then it loads just in time.
    chat = httpx.post(f"{server.base_url}/chat/completions", timeout=300, json={
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    return {"chat_status": chat.status_code,
            "settled": server.wait_idle(timeout=120)["models"][0]
            if server.status()["models"] else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=10, help="per operation and phase")
    ap.add_argument("--min-cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    runs: list[dict] = []
    statuses: Counter = Counter()
    with FakeHub() as hub:
        hub.add_repo("fuzz-org/Tiny-GGUF", {"tiny.Q4_0.gguf": make_gguf(4096)})
        models = Path(tempfile.mkdtemp(prefix="lmserve-fuzz-models-"))
        server = ServerProcess(env={"HF_ENDPOINT": hub.url, "LMSERVE_MODELS_DIR": str(models)})
        try:
            model = server.status()["models"][0]["id"]

            def fuzz(seed: int, **routes: tuple[str, ...]) -> None:
                result = run_fuzz(server.origin, max_examples=args.max_examples, seed=seed,
                                  phases="coverage,fuzzing", timeout=6 * 3600, **routes)
                statuses.update(result.statuses)
                runs.append({"seed": seed, "routes": routes, "cases": result.cases,
                             "exit_code": result.exit_code, "failures": result.failures,
                             "errors": result.report.get("errors", []),
                             "output_tail": result.output[-4000:]})
                print(f"seed {seed} {routes}: {result.cases} cases, exit {result.exit_code}, "
                      f"{len(result.failures)} failure kinds", flush=True)
                if not result.report:
                    raise SystemExit(result.output[-3000:])

            seed = args.seed
            while sum(r["cases"] for r in runs) < args.min_cases:
                fuzz(seed, exclude=(UNLOAD,))
                seed += 1
            # Unloads last: after an unload of everything, the other routes would mostly
            # meet the 404 of a model that is gone.
            fuzz(seed, exclude=(), include=(UNLOAD,))
            after = still_serving(server, model)
        finally:
            exit_code = server.stop()
    by_status: Counter = Counter()
    for (_, status), n in statuses.items():
        by_status[status] += n
    out = {
        "date": started.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - t0, 1),
        "cases": sum(r["cases"] for r in runs),
        "responses": sum(statuses.values()),
        "server_errors_5xx": sum(n for s, n in by_status.items() if s >= 500),
        "responses_by_status": dict(sorted(by_status.items())),
        "responses_by_route": _by_route(statuses),
        "failures": [f for r in runs for f in r["failures"]],
        "after": after,
        "server_exit_code": exit_code,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"fuzz-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))
    print(f"written to {path}")
    ok = (not out["failures"] and out["server_errors_5xx"] == 0
          and after["chat_status"] == 200 and exit_code == 0)
    sys.exit(0 if ok else 1)


def _by_route(statuses: Counter) -> dict[str, dict[int, int]]:
    routes: dict[str, dict[int, int]] = {}
    for (route, status), n in sorted(statuses.items()):
        routes.setdefault(route, {})[status] = n
    return routes


if __name__ == "__main__":
    main()
