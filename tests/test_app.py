"""`lmserve app` in Debian's Chromium: the Server tab switches the real API listener while
the models stay loaded, and its settings land in the config file the CLI reads; Chat,
My Models (load, unload, import) and Discover (search, download, cancel, resume) work
against the real server, and each tab's screenshot is taken from the run."""

import json
import os
import shutil
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest

from lmserve import config
from lmserve.api_keys import create_key
from lmserve.models.bundled import bundled_model_path
from tests.app_process import AppProcess, free_port
from tests.fakehub import FakeHub, make_gguf
from tests.test_browser import CHROMIUM, browser  # noqa: F401  (the shared Chromium)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture()
def app(tmp_path):
    api_port = free_port()
    (tmp_path / "config.toml").write_text(
        f"[server]\nport = {api_port}\n\n[app]\nport = {free_port()}\n")
    proc = AppProcess(tmp_path)
    yield proc
    proc.stop()


def _status(app: AppProcess) -> dict:
    return json.loads(app.cli("server", "status", "--json").stdout)


def _open(browser, app: AppProcess):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app.page_url)
    return page, requests


def _keep_screenshot(page, folder: Path, name: str) -> None:
    """A screenshot of the whole page; into docs/ too when UPDATE_DOCS_SCREENSHOTS is set."""
    page.screenshot(path=str(folder / name), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        shutil.copy(folder / name, DOCS / name)


def _unnamed_controls(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('button, input, select')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.textContent.trim())
        .map(el => el.outerHTML)""")


def _tab_to(page, control, presses: int = 40) -> None:
    """Presses Tab until `control` has the focus, which must then be visible."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if control.evaluate("el => el === document.activeElement"):
            assert control.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
            return
    raise AssertionError(f"{control} was not reached with Tab")


def _save_settings(page) -> None:
    page.get_by_role("button", name="Save settings").click()  # the note says "Saving…" first
    page.wait_for_function("document.getElementById('settings-note').textContent"
                           ".startsWith('Saved')")


def test_start_stop_and_port_from_the_server_tab(app, browser, tmp_path):  # noqa: F811
    page, requests = _open(browser, app)
    page.wait_for_function("document.getElementById('indicator').textContent === 'Running'")
    status = _status(app)
    assert status["running"] is True
    assert page.text_content("#base-url") == status["base_url"]
    api = f"http://127.0.0.1:{app.state['port']}"

    page.get_by_role("button", name="Stop Server").click()
    page.wait_for_function("document.getElementById('indicator').textContent === 'Stopped'")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/v1/models", timeout=5)
    assert httpx.get(f"{app.url}v1/models", timeout=5).json()["data"]  # models stay loaded
    assert _status(app)["running"] is False
    # the live log shows the server's own lines, and its filter hides the others
    page.wait_for_function("document.getElementById('log').textContent.includes('stopped')")
    page.get_by_label("Filter").fill("no such line")
    assert page.text_content("#log") == ""
    page.get_by_label("Filter").fill("")

    # a port in use: the error names it and the app keeps running
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        page.get_by_label("Port", exact=True).fill(str(busy))
        _save_settings(page)
        page.get_by_role("button", name="Start Server").click()
        page.wait_for_selector("#server-error:not([hidden])")
        assert str(busy) in page.text_content("#server-error")
    assert page.text_content("#indicator") == "Stopped"

    new_port = free_port()
    page.get_by_label("Port", exact=True).fill(str(new_port))
    _save_settings(page)
    assert config.load_config(tmp_path / "config.toml").server.port == new_port
    page.get_by_role("button", name="Start Server").click()
    page.wait_for_function("document.getElementById('indicator').textContent === 'Running'")
    assert page.text_content("#base-url") == f"http://localhost:{new_port}/v1"
    assert _status(app)["base_url"] == f"http://localhost:{new_port}/v1"
    assert page.is_hidden("#server-error")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{new_port}/v1", api_key="x",
                           max_retries=0)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, max_tokens=4,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].finish_reason in ("length", "stop")
    # the snippet carries the live URL and model
    assert f"http://localhost:{new_port}/v1" in page.text_content("#snippet")
    assert model in page.text_content("#snippet")
    # the API port's request is in the app's requests table too
    page.wait_for_selector("#requests tbody tr[data-state=done]")

    _keep_screenshot(page, tmp_path, "app-server-tab.png")
    origin = app.url.rstrip("/")
    assert requests and all(url.startswith(origin + "/") for url in requests), requests
    # the page's status poll stays out of the log; its Start and Stop are in it
    assert "GET /app/api/server " not in app.log()
    assert "POST /app/api/server/start 409" in app.log()
    page.close()


def test_controls_are_labelled_and_reached_by_keyboard(app, browser):  # noqa: F811
    page, _ = _open(browser, app)
    page.wait_for_function("document.getElementById('indicator').textContent === 'Running'")
    assert _unnamed_controls(page) == []
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.name"))
    for control in ("toggle-server", "server.port", "server.host", "app.start_server",
                    "pause-log", "log-filter"):
        assert control in reached
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.get_by_role("tab", name="My Models").click()
    for control in ("Path on this machine", "Import mode", "Key as publisher/repo"):
        _tab_to(page, page.get_by_label(control))
    _tab_to(page, page.get_by_role("button", name="Import"))
    page.close()


def test_start_on_launch_setting_survives_a_restart(tmp_path, browser):  # noqa: F811
    (tmp_path / "config.toml").write_text(
        f"[server]\nport = {free_port()}\n\n[app]\nport = {free_port()}\n")
    app = AppProcess(tmp_path)
    try:
        page, _ = _open(browser, app)
        page.wait_for_function("document.getElementById('indicator').textContent === 'Running'")
        page.get_by_label("Start server on application launch").uncheck()
        _save_settings(page)
        page.close()
    finally:
        app.stop()
    assert "start_server = false" in (tmp_path / "config.toml").read_text()

    app = AppProcess(tmp_path)  # honours the setting: the API listener stays closed
    try:
        assert _status(app)["running"] is False
        page, _ = _open(browser, app)
        page.wait_for_function("document.getElementById('indicator').textContent === 'Stopped'")
        assert not page.get_by_label("Start server on application launch").is_checked()
        page.close()
    finally:
        app.stop()


def _busy_slots(app: AppProcess) -> int:
    models = httpx.get(f"{app.url}api/v1/models", timeout=10).json()["data"]
    return sum(i["busy_slots"] for m in models for i in m["loaded_instances"])


ASSISTANT = "document.querySelector('#messages article[data-role=assistant] .content')"


def test_chat_streams_stops_and_keeps_conversations(tmp_path, browser):  # noqa: F811
    # the API listener stays off: the page chats through the app's own origin
    (tmp_path / "config.toml").write_text(
        f"[server]\nport = {free_port()}\n\n[app]\nport = {free_port()}\nstart_server = false\n")
    app = AppProcess(tmp_path)
    try:
        page, requests = _open(browser, app)
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_function("document.getElementById('chat-model').value !== ''")
        page.get_by_text("Generation settings").click()
        page.get_by_label("Max tokens").fill("2000")
        page.get_by_label("Temperature").fill("0")  # greedy: a long count, never an early stop
        page.get_by_role("textbox", name="Message").fill(
            "Count from 1 to 1000, one number per line.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(f"{ASSISTANT} && {ASSISTANT}.textContent.length > 20")
        assert _busy_slots(app) == 1
        live = httpx.get(f"{app.url}app/api/requests", timeout=5).json()["data"][0]
        assert live["path"] == "/v1/chat/completions" and live["state"] == "generating"
        page.get_by_role("button", name="Stop").click()
        page.wait_for_function("document.querySelector('#messages .stats') !== null")
        stats = page.text_content("#messages .stats")
        assert "stop: cancelled" in stats and "TTFT" in stats and "tok/s" in stats
        deadline = time.monotonic() + 30  # the server notices the closed stream, then frees
        while _busy_slots(app) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _busy_slots(app) == 0
        rows = httpx.get(f"{app.url}app/api/requests", timeout=5).json()["data"]
        chat = next(r for r in rows if r["path"] == "/v1/chat/completions")
        assert chat["state"] == "cancelled" and chat["output_tokens"] > 5
        assert chat["prompt_tokens"] > 5 and chat["ttft_s"] > 0
        page.wait_for_selector("#conversation-list button")
        assert page.text_content("#conversation-list").startswith("Count from 1")
        page.get_by_label("Title").fill("Counting")
        page.get_by_role("button", name="Rename").click()
        page.wait_for_selector("#conversation-list button:has-text('Counting')")
        _keep_screenshot(page, tmp_path, "app-chat-tab.png")
        origin = app.url.rstrip("/")
        assert all(url.startswith(origin + "/") for url in requests), requests
        print(f"chat: {stats}")  # the first token's delay, for the docs
        page.close()
    finally:
        app.stop()

    app = AppProcess(tmp_path)  # the conversation outlives the process
    try:
        hostile = httpx.post(f"{app.url}app/api/conversations", timeout=10, json={
            "title": "hostile", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant",
                 "content": "<script>window.pwned = 1</script> **bold** `<b>code</b>`"}]})
        assert hostile.status_code == 200
        page, _ = _open(browser, app)
        page.get_by_role("tab", name="Chat").click()
        page.get_by_role("button", name="Counting").click()
        page.wait_for_function(f"{ASSISTANT} !== null")
        assert "1" in page.text_content("#messages article[data-role=user]")
        # Edit: the message goes back to the composer; the conversation continues before it
        page.get_by_role("button", name="Edit this message and continue from it").click()
        assert page.get_by_role("textbox", name="Message").input_value().startswith("Count")
        assert page.locator("#messages article").count() == 0
        page.get_by_role("button", name="hostile").click()
        page.wait_for_function(f"{ASSISTANT} && {ASSISTANT}.textContent.includes('pwned')")
        content = page.text_content("#messages article[data-role=assistant] .content")
        assert "<script>window.pwned = 1</script>" in content  # shown as text
        assert "<b>code</b>" in content
        assert page.evaluate("window.pwned") is None
        assert page.locator("#messages script, #messages b").count() == 0
        assert page.locator("#messages article[data-role=assistant] strong").count() == 1
        page.close()
    finally:
        app.stop()


def test_conversation_routes_refuse_bad_bodies(app):
    bad = httpx.post(f"{app.url}app/api/conversations", timeout=10,
                     json={"messages": [{"role": "robot", "content": "x"}]})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "messages[0]"
    missing = httpx.get(f"{app.url}app/api/conversations/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    foreign = httpx.post(f"{app.url}app/api/conversations", timeout=10, json={},
                         headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403


def _instances(api: str) -> list[dict]:
    return [i for m in httpx.get(f"{api}/api/v1/models", timeout=10).json()["data"]
            for i in m["loaded_instances"]]


def test_my_models_unloads_and_loads_from_the_page(app, browser):  # noqa: F811
    page, requests = _open(browser, app)
    page.get_by_role("tab", name="My Models").click()
    api = f"http://127.0.0.1:{app.state['port']}"
    [instance] = _instances(api)
    page.get_by_role("button", name=f"Unload {instance['id']}").click()
    page.wait_for_selector(f"#library button[aria-label='Unload {instance['id']}']",
                           state="detached")
    assert _instances(api) == []

    key = instance["model"]
    page.get_by_role("button", name=f"Load {key}").click()  # opens the load panel
    panel = page.locator("#load-panel")
    page.wait_for_function("document.getElementById('load-estimate').dataset.total")
    first = int(page.get_attribute("#load-estimate", "data-total"))
    panel.get_by_label("Context length").fill("512")
    panel.get_by_label("Parallel requests").fill("2")
    page.wait_for_function("document.getElementById('load-estimate').textContent"
                           ".includes('2 × 512 tokens')")  # shown before the load
    assert int(page.get_attribute("#load-estimate", "data-total")) < first
    smaller = int(page.get_attribute("#load-estimate", "data-total"))
    panel.get_by_label("V cache").select_option("q8_0")  # a quantized V cache: half as big
    page.wait_for_function("document.getElementById('load-estimate').textContent"
                           ".includes('f16/q8_0')")
    assert int(page.get_attribute("#load-estimate", "data-total")) < smaller
    assert page.text_content("#runtime").startswith("cpu, llama.cpp ")
    panel.get_by_label("Identifier").fill("small")
    panel.get_by_role("button", name="Load with these settings").click()
    page.wait_for_selector("#library button[aria-label='Unload small']")
    [loaded] = _instances(api)
    assert loaded["id"] == "small"
    assert (loaded["config"]["context_length"], loaded["config"]["parallel"]) == (512, 2)
    assert loaded["config"]["kv_cache_type_v"] == "q8_0"
    client = openai.OpenAI(base_url=f"{api}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model=loaded["id"], max_tokens=2,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.model == loaded["id"]

    # saved defaults: used by a just-in-time load and by `lmserve load`
    panel.get_by_label("Context length").fill("768")
    panel.get_by_label("TTL, idle seconds (0 = never)").fill("0")
    panel.get_by_role("button", name="Save as this model's defaults").click()
    page.wait_for_function("document.getElementById('load-note').textContent"
                           ".startsWith('Saved')")
    saved = json.loads((app.home / "model-defaults.json").read_text())
    assert saved == {key: {"context_length": 768, "parallel": 2, "ttl": 0.0,
                           "kv_cache_type_v": "q8_0"}}
    httpx.post(f"{api}/api/v1/models/unload", json={"all": True}, timeout=30)
    client.chat.completions.create(model=key, max_tokens=2,
                                   messages=[{"role": "user", "content": "Hi"}])
    [jit] = _instances(api)
    assert (jit["config"]["context_length"], jit["config"]["parallel"]) == (768, 2)
    assert jit["config"]["ttl"] is None  # the saved "never" wins over the JIT TTL
    httpx.post(f"{api}/api/v1/models/unload", json={"all": True}, timeout=30)
    assert app.cli("load", key, "--port", str(app.state["port"])).returncode == 0
    [cli] = _instances(api)
    assert cli["config"]["context_length"] == 768
    bad = httpx.put(f"{app.url}app/api/models/load-settings", timeout=5,
                    json={"model": key, "parallel": 0})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"

    # Import: a GGUF file on this machine joins the library under the key given, and loads
    fixture = app.home / "downloads" / "smol.Q4_1.gguf"
    fixture.parent.mkdir()
    shutil.copy(bundled_model_path(), fixture)
    page.get_by_label("Path on this machine").fill(str(app.home / "downloads" / "nothing.gguf"))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#models-error:not([hidden])")
    assert "does not exist" in page.text_content("#models-error")
    page.get_by_label("Path on this machine").fill(str(fixture))
    page.get_by_label("Import mode").select_option("move")
    page.get_by_label("Key as publisher/repo").fill("fixtures/imported-smol")
    page.get_by_role("button", name="Import").click()
    page.wait_for_function("document.getElementById('import-note').textContent"
                           ".startsWith('Imported')")
    assert page.text_content("#import-note") == "Imported: fixtures/imported-smol (move)."
    assert not fixture.exists()  # moved, as asked
    assert (app.home / "models" / "fixtures" / "imported-smol" / fixture.name).is_file()
    page.get_by_role("button", name="Load fixtures/imported-smol").click()
    page.wait_for_function("document.getElementById('load-estimate').dataset.total")
    panel.get_by_role("button", name="Load with these settings").click()
    page.wait_for_selector("#library button[aria-label='Unload fixtures/imported-smol']")
    reply = client.chat.completions.create(model="fixtures/imported-smol", max_tokens=2,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.model == "fixtures/imported-smol"
    foreign = httpx.post(f"{api}/api/v1/models/import", timeout=10,
                         headers={"Origin": "http://evil.example"}, json={"path": str(fixture)})
    assert foreign.status_code == 403
    relative = httpx.post(f"{api}/api/v1/models/import", timeout=10,
                          json={"path": "smol.gguf"})
    assert relative.status_code == 400 and relative.json()["error"]["param"] == "path"
    _keep_screenshot(page, app.home, "app-models-tab.png")
    origin = app.url.rstrip("/")
    assert all(url.startswith(origin + "/") for url in requests), requests
    page.close()


def test_server_stop_and_start_commands_flip_the_apps_listener(app):
    api = f"http://127.0.0.1:{app.state['port']}"
    stopped = app.cli("server", "stop")
    assert stopped.returncode == 0 and "keeps the models loaded" in stopped.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/v1/models", timeout=5)
    assert app.proc.poll() is None and httpx.get(f"{app.url}health", timeout=5).status_code == 200
    assert app.cli("server", "status").returncode == 1
    started = app.cli("server", "start")
    assert started.returncode == 0, started.stderr
    assert _status(app)["running"] is True
    assert httpx.get(f"{api}/v1/models", timeout=5).json()["data"]


def test_with_keys_on_the_app_port_asks_for_a_credential_the_page_has(tmp_path,
                                                                     browser):  # noqa: F811
    (tmp_path / "config.toml").write_text(
        f"[server]\nport = {free_port()}\n\n[app]\nport = {free_port()}\n")
    key, _ = create_key(scope="inference", path=tmp_path / "keys.json")
    app = AppProcess(tmp_path)
    try:
        token = app.state["app_token"]
        assert (tmp_path / "server.json").stat().st_mode & 0o077 == 0  # the token stays private
        chat = {"model": app.state["models"][0], "max_tokens": 2,
                "messages": [{"role": "user", "content": "Hi"}]}
        bare = httpx.post(f"{app.url}v1/chat/completions", json=chat, timeout=60)
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "missing_api_key"
        assert httpx.get(f"{app.url}app/api/server", timeout=5).status_code == 401
        wrong = httpx.get(f"{app.url}app/api/server", timeout=5,
                          headers={"Authorization": f"Bearer {token}x"})
        assert wrong.status_code == 401
        assert httpx.post(f"{app.url}v1/chat/completions", json=chat, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}).status_code == 200
        # the page and its assets are open; what they read is not
        assert httpx.get(app.url, timeout=5).status_code == 200
        assert token not in httpx.get(app.url, timeout=5).text

        page, requests = _open(browser, app)
        page.wait_for_function("document.getElementById('indicator').textContent === 'Running'")
        assert "#token" not in page.url  # dropped from the address bar once read
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_function("document.getElementById('chat-model').value !== ''")
        page.get_by_role("textbox", name="Message").fill("Say hello.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#messages .stats")
        assert page.text_content("#chat-error") == ""
        page.wait_for_selector("#conversation-list button")  # saved after the reply
        with page.expect_download() as download:
            page.get_by_role("link", name="Export JSON").click()
        exported = json.loads(Path(download.value.path()).read_text())
        assert exported["messages"][0]["content"] == "Say hello."
        page.wait_for_function(  # the live log, read with the credential too
            "document.getElementById('log').textContent.includes('/v1/chat/completions')")
        # the Server tab's requests table lists the Chat request with its numbers
        page.get_by_role("tab", name="Server").click()
        page.wait_for_selector("#requests tbody tr[data-state=done]")
        cells = page.locator("#requests tbody tr[data-state=done]").first.locator("td")
        texts = cells.all_text_contents()
        assert texts[1] == "POST /v1/chat/completions" and texts[2] == chat["model"]
        assert int(texts[4]) > 0 and 0 < int(texts[5]) <= 2000
        assert texts[6].endswith(" s") and float(texts[7]) > 0
        rows = httpx.get(f"{app.url}app/api/requests", timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).json()["data"]
        assert [r["path"] for r in rows] == ["/v1/chat/completions"] * 2  # polls left out
        assert rows[0]["ttft_s"] > 0 and rows[0]["state"] == "done"
        # the CLI reaches the app with the token from the private state file
        assert app.cli("server", "stop").returncode == 0
        assert _status(app)["running"] is False
        page.close()
    finally:
        app.stop()


def test_discover_searches_downloads_and_the_model_answers(tmp_path, browser,  # noqa: F811
                                                           monkeypatch):
    with FakeHub() as hub:
        hub.add_repo("test-org/Discover-Mirror-GGUF", {
            "discover-mirror.Q4_1.gguf": bundled_model_path().read_bytes(),
            "discover-mirror.Q8_0.gguf": make_gguf(4096), "README.md": b"# mirror"})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        (tmp_path / "config.toml").write_text(
            f"[server]\nport = {free_port()}\n\n[app]\nport = {free_port()}\n")
        app = AppProcess(tmp_path)
        try:
            page, requests = _open(browser, app)
            page.get_by_role("tab", name="Discover").click()
            page.get_by_label("GGUF models matching").fill("discover-mirror")
            page.get_by_role("button", name="Search").click()
            page.get_by_role("button", name="Files of test-org/Discover-Mirror-GGUF").click()
            page.wait_for_selector("#quantizations tbody tr")
            rows = page.locator("#quantizations tbody tr").all_inner_texts()
            assert [r.split("\t")[0] for r in rows] == ["discover-mirror.Q8_0",
                                                        "discover-mirror.Q4_1"]
            assert "fits" in rows[1]

            # the Hub goes silent after 8 MB; Cancel (by keyboard) stops it there
            hub.hold(after_bytes=8_000_000)
            page.get_by_role("button", name="Download discover-mirror.Q4_1").click()
            progress = page.get_by_label("Progress of discover-mirror.Q4_1")
            progress.wait_for()
            page.wait_for_function("document.querySelector('#quantizations progress:not("
                                   "[hidden])').value === 8e6")
            page.get_by_role("button", name="Files of test-org/Discover-Mirror-GGUF").focus()
            _tab_to(page, page.get_by_role(
                "button", name="Cancel the download of discover-mirror.Q4_1"))
            page.keyboard.press("Enter")
            page.wait_for_selector(".download-note[data-status=cancelled]")
            hub.release()
            assert page.text_content(".download-note[data-status]").startswith(
                "Cancelled at 8 MB of 9")
            part = (tmp_path / "models" / "test-org" / "Discover-Mirror-GGUF"
                    / "discover-mirror.Q4_1.gguf.part")
            assert part.stat().st_size == 8_000_000  # kept for the resume
            _tab_to(page, page.get_by_role(
                "button", name="Discard the partial download of discover-mirror.Q4_1"))
            assert _unnamed_controls(page) == []
            _keep_screenshot(page, tmp_path, "app-discover-tab.png")

            # Download again: it resumes from the 8 MB on disk, then loads and answers
            page.get_by_role("button", name="Download discover-mirror.Q4_1").click()
            page.wait_for_selector(".download-note[data-status=completed]", timeout=120_000)
            assert page.text_content(".download-note[data-status]") == (
                "Downloaded: test-org/discover-mirror-gguf is in My Models.")
            assert page.get_attribute(".download-note[data-status]",
                                      "data-resumed-from") == "8000000"
            transfers = hub.file_requests("discover-mirror.Q4_1.gguf")
            assert [t.headers.get("range") for t in transfers] == [None, "bytes=8000000-"]
            assert progress.evaluate("p => p.value === p.max && p.max > 90e6")
            api = f"http://127.0.0.1:{app.state['port']}"
            client = openai.OpenAI(base_url=f"{api}/v1", api_key="x", max_retries=0)
            reply = client.chat.completions.create(
                model="test-org/discover-mirror-gguf", max_tokens=2,
                messages=[{"role": "user", "content": "Hi"}])
            assert reply.model == "test-org/discover-mirror-gguf"
            page.get_by_role("tab", name="My Models").click()
            page.wait_for_selector("#library button[aria-label='Load "
                                   "test-org/discover-mirror-gguf']")

            hub.stop()  # the Hub goes away: the page says so, and no trace
            page.get_by_role("tab", name="Discover").click()
            page.get_by_role("button", name="Search").click()
            page.wait_for_selector("#discover-error:not([hidden])")
            message = page.text_content("#discover-error")
            assert "Cannot reach the Hugging Face Hub" in message
            assert "Traceback" not in message
            origin = app.url.rstrip("/")
            assert all(url.startswith(origin + "/") for url in requests), requests
            page.close()
        finally:
            app.stop()
