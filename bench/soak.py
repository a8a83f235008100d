"""The soak: hundreds of concurrent clients against a real server for minutes.

Starts lmserve on a free loopback port with the bundled model and its default settings,
warms it up, reads its RSS, then runs tests/soak_load.py's clients (chat, streamed chat,
streams abandoned after a random delay, embeddings, invalid requests, and one load and
unload of a second instance halfway) until the time is up. Reports completed requests,
503s, errors (which must be 0), RSS before and after, busy slots once settled (must be 0)
and TTFT percentiles of the streams; writes them as JSON under bench/results/.

    python bench/soak.py [--clients 200] [--duration 240] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the load generator lives with the tests that reuse it

from tests.soak_load import broken_promises, soak  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--duration", type=float, default=240, help="seconds of load")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    result = asyncio.run(soak(args.clients, args.duration, args.seed, []))
    result.update({
        "date": started.isoformat(timespec="seconds"),
        "total_wall_s": round(time.monotonic() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "seed": args.seed,
        "broken_promises": broken_promises(result),
    })
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"soak-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    sys.exit(1 if result["broken_promises"] else 0)


if __name__ == "__main__":
    main()
