"""A web page on another local origin calls the server from a real browser (headless
Chromium): with CORS open it lists models and streams a chat; with --no-cors the browser
refuses the same calls."""

import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.server_process import ServerProcess

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin():
    """The test page served from its own origin, as a local web app would be."""
    handler = functools.partial(_QuietHandler,
                                directory=str(Path(__file__).resolve().parent / "web"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Flags that keep Chromium from reaching for the network on its own.
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield b
        b.close()


def _run_page(browser, page_origin: str, api: str) -> str:
    page = browser.new_page()
    try:
        page.goto(f"{page_origin}/chat_page.html?api={api}")
        page.wait_for_function(
            "document.getElementById('result').textContent !== 'pending'", timeout=60_000)
        return page.text_content("#result")
    finally:
        page.close()


def test_a_page_on_another_origin_streams_a_chat(server, browser, page_origin):
    seen = json.loads(_run_page(browser, page_origin, server.base_url))
    assert seen["models"] == [server.status()["models"][0]["id"]]
    assert seen["status"] == 200
    assert seen["content_type"].startswith("text/event-stream")
    assert seen["text"]
    assert seen["last"] == "data: [DONE]"


def test_the_browser_refuses_a_server_without_cors(browser, page_origin):
    proc = ServerProcess("--no-cors", "--parallel", "1")
    try:
        result = _run_page(browser, page_origin, proc.base_url)
    finally:
        proc.stop()
    assert result == "error: TypeError: Failed to fetch"
