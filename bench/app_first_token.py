"""How long the app's Chat tab takes from pressing Send to showing the first token.

Starts `lmserve app --no-browser` in a fresh home with the bundled model (API listener
off: the page chats through its own origin, as it does by default), opens the page in
Debian's Chromium through Playwright, and sends a short prompt in a new chat each run,
with a new number at its head each time so that the prompt cache cannot serve it from a
previous run (`--same-message` sends one text every time: the cached case, as
Regenerate is). The page itself measures, with `performance.now()`: from the Send
button's click event to the first frame painted after the reply's first text reached the
DOM. The Chat tab's own TTFT (request sent → first streamed chunk) is read beside it.
Prints each run and writes JSON under bench/results/.

    python bench/app_first_token.py [--runs 10] [--max-tokens 32] [--same-message]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the app runner and the browser flags live with the tests

from tests.app_process import AppProcess, free_port  # noqa: E402
from tests.test_browser import CHROMIUM  # noqa: E402

PROMPT = "Note {n}: write one sentence about the sea."
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]

# Armed before each Send: the click's time, then the first painted frame after the new
# reply's text appears (a MutationObserver, then requestAnimationFrame).
ARM = """() => {
  window.__sent = null; window.__shown = null;
  document.getElementById("send").addEventListener("click",
    () => { window.__sent = performance.now(); }, { capture: true, once: true });
  const messages = document.getElementById("messages");
  const watch = new MutationObserver(() => {
    const reply = messages.querySelector("article[data-role=assistant] .content");
    if (window.__sent !== null && reply && reply.textContent.trim()) {
      watch.disconnect();
      requestAnimationFrame(() => { window.__shown = performance.now(); });
    }
  });
  watch.observe(messages, { childList: true, subtree: true, characterData: true });
}"""


def _one_run(page, max_tokens: int, n: int) -> dict[str, float]:
    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Max tokens").fill(str(max_tokens))
    page.get_by_role("textbox", name="Message").fill(PROMPT.format(n=n))
    page.evaluate(ARM)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("window.__shown !== null", timeout=120_000)
    shown = page.evaluate("window.__shown - window.__sent")
    page.wait_for_selector("#messages .stats", timeout=120_000)
    stats = page.text_content("#messages .stats") or ""
    ttft = next((float(part.split()[1]) for part in stats.split(" · ")
                 if part.startswith("TTFT ")), float("nan"))
    return {"send_to_first_token_ms": round(shown, 1), "chat_ttft_ms": ttft}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--same-message", action="store_true",
                    help="send one text every run, which the prompt cache then serves")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("Chromium is not installed (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    started = datetime.now(UTC)
    home = Path(tempfile.mkdtemp(prefix="lmserve-bench-app-"))
    (home / "config.toml").write_text(f"[server]\nport = {free_port()}\n\n"
                                      f"[app]\nport = {free_port()}\nstart_server = false\n")
    app = AppProcess(home)
    runs: list[dict[str, float]] = []
    load_before = os.getloadavg()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.page_url)
            page.get_by_role("tab", name="Chat").click()
            page.wait_for_function("document.getElementById('chat-model').value !== ''")
            page.get_by_text("Generation settings").click()
            page.get_by_label("Temperature").fill("0")
            _one_run(page, args.max_tokens, 0)  # warm-up: first decode, caches, JIT of the page
            for i in range(args.runs):
                n = 0 if args.same_message else 1000 + 7919 * i
                runs.append(_one_run(page, args.max_tokens, n))
                print(f"run {i + 1}: {runs[-1]}", flush=True)
                time.sleep(0.5)
            browser.close()
    finally:
        app.stop()
    shown = [r["send_to_first_token_ms"] for r in runs]
    result = {
        "date": started.isoformat(timespec="seconds"),
        "prompt": PROMPT, "same_message": args.same_message, "max_tokens": args.max_tokens,
        "runs": runs,
        "send_to_first_token_ms": {"median": round(statistics.median(shown), 1), "min": min(shown),
                                   "max": max(shown)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"app-first-token-{started:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
