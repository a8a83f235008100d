"""Optional API keys: `lmserve key create`, scopes, the ad-hoc --api-key, and the CLI
sending its key. Also the configured request limits, on the same server."""

import subprocess
import sys
import tempfile
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.server_process import ServerProcess

SMOL = "huggingfacetb/smollm2-135m-instruct"
ADHOC = "ad-hoc-key-for-tests"
CHAT = {"model": SMOL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def _lmserve(home: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmserve", *args], capture_output=True,
                          text=True, timeout=120,
                          env={"LMSERVE_HOME": str(home), "PATH": "/usr/bin:/bin",
                               **(env or {})})


@pytest.fixture(scope="module")
def keyed():
    """A server with a stored inference key, a stored admin key and an ad-hoc key."""
    home = Path(tempfile.mkdtemp(prefix="lmserve-keys-"))
    keys = {}
    for scope in ("inference", "admin"):
        made = _lmserve(home, "key", "create", "--name", f"test-{scope}", "--scope", scope)
        assert made.returncode == 0, made.stderr
        keys[scope] = made.stdout.strip()
        assert "cannot be shown again" in made.stderr
    (home / "config.toml").write_text(
        "[limits]\nmax_body_mb = 1\nmax_messages = 3\nmax_n = 2\nmax_tokens = 64\n"
        "max_stop = 2\nmax_tools = 1\n")
    proc = ServerProcess("--parallel", "2", "--api-key", ADHOC, home=home)
    proc.keys = keys
    yield proc
    proc.stop()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_only_as_hashes(keyed):
    stored = (keyed.home / "keys.json").read_text()
    assert keyed.keys["admin"] not in stored and keyed.keys["inference"] not in stored
    listed = _lmserve(keyed.home, "key", "list")
    assert "test-admin" in listed.stdout and keyed.keys["admin"] not in listed.stdout


@pytest.mark.parametrize("headers", [{}, _bearer("wrong"), {"Authorization": "Basic eA=="},
                                     {"x-api-key": ADHOC}])
def test_no_or_wrong_key_is_401(keyed, headers):
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                         ("GET", "/api/v1/status"), ("POST", "/api/v1/models/load"),
                         ("GET", "/v1/nowhere")):
        r = httpx.request(method, keyed.origin + path, headers=headers, json=CHAT, timeout=10)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(keyed.origin + "/health", timeout=10).status_code == 200


def test_inference_key_calls_inference_routes_only(keyed):
    key = keyed.keys["inference"]
    client = openai.OpenAI(base_url=keyed.base_url, api_key=key, max_retries=0)
    assert client.chat.completions.create(**CHAT).choices[0].message.role == "assistant"
    assert SMOL in [m.id for m in client.models.list().data]
    for path in ("/api/v1/chat/completions", "/api/v1/tokenize"):
        r = httpx.post(keyed.origin + path, headers=_bearer(key), timeout=60,
                       json={**CHAT, "text": "hi"})
        assert r.status_code == 200, (path, r.text)
    for method, path, body in (("POST", "/api/v1/models/load", {"model": SMOL}),
                               ("POST", "/api/v1/models/unload", {"model": SMOL}),
                               ("POST", "/api/v1/models/download", {"model": "a/b"}),
                               ("GET", "/api/v1/logs/stream", None),
                               ("DELETE", f"/api/v1/models/{SMOL}", None)):
        r = httpx.request(method, keyed.origin + path, headers=_bearer(key), json=body,
                          timeout=10)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "insufficient_scope"
    status = httpx.get(keyed.origin + "/api/v1/status", headers=_bearer(key), timeout=10)
    assert [m["id"] for m in status.json()["models"]] == [SMOL]  # nothing was unloaded


@pytest.mark.parametrize("which", ["admin", "adhoc"])
def test_admin_and_adhoc_keys_may_load(keyed, which):
    key = ADHOC if which == "adhoc" else keyed.keys["admin"]
    r = httpx.post(keyed.origin + "/api/v1/models/load", json={"model": SMOL},
                   headers=_bearer(key), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "already_loaded"


def test_anthropic_route_takes_x_api_key_and_answers_in_its_envelope(keyed):
    client = anthropic.Anthropic(base_url=keyed.origin, api_key=keyed.keys["inference"],
                                 max_retries=0)
    reply = client.messages.create(model=SMOL, max_tokens=2,
                                   messages=[{"role": "user", "content": "hi"}])
    assert reply.role == "assistant"
    r = httpx.post(keyed.origin + "/v1/messages", json=CHAT, timeout=10,
                   headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    assert r.json() == {"type": "error", "error": {"type": "authentication_error",
                                                   "message": "Incorrect API key."}}


def test_cli_sends_its_key(keyed):
    port = str(keyed.port)
    refused = _lmserve(keyed.home, "ps", "--port", port)
    assert refused.returncode != 0 and "API key" in refused.stderr + refused.stdout
    by_flag = _lmserve(keyed.home, "ps", "--json", "--port", port,
                       "--api-key", keyed.keys["admin"])
    assert by_flag.returncode == 0, by_flag.stderr
    assert SMOL in by_flag.stdout
    by_env = _lmserve(keyed.home, "load", SMOL, "--port", port,
                      env={"LMSERVE_API_KEY": keyed.keys["admin"]})
    assert by_env.returncode == 0, by_env.stderr
    scoped = _lmserve(keyed.home, "load", SMOL, "--port", port,
                      env={"LMSERVE_API_KEY": keyed.keys["inference"]})
    assert scoped.returncode != 0 and "admin key" in scoped.stderr
    status = _lmserve(keyed.home, "server", "status")
    assert status.returncode == 0 and "needs an API key" in status.stdout
    status = _lmserve(keyed.home, "server", "status", env={"LMSERVE_API_KEY": ADHOC})
    assert status.returncode == 0 and "slots busy" in status.stdout
    status = _lmserve(keyed.home, "server", "status", "--api-key", keyed.keys["inference"])
    assert status.returncode == 0 and "slots busy" in status.stdout


def test_revoked_key_is_refused_at_once(keyed):
    made = _lmserve(keyed.home, "key", "create", "--name", "short-lived")
    key = made.stdout.strip()
    assert httpx.get(keyed.origin + "/v1/models", headers=_bearer(key),
                     timeout=10).status_code == 200
    assert _lmserve(keyed.home, "key", "revoke", "short-lived").returncode == 0
    assert httpx.get(keyed.origin + "/v1/models", headers=_bearer(key),
                     timeout=10).status_code == 401
    assert ADHOC not in keyed.log() and keyed.keys["admin"] not in keyed.log()


# -- configured limits -------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("messages", [{"role": "user", "content": "hi"}] * 4),
    ("n", 3),
    ("max_tokens", 65),
    ("max_completion_tokens", 65),
    ("stop", ["a", "b", "c"]),
    ("tools", [{"type": "function", "function": {"name": f"f{i}", "parameters": {}}}
               for i in range(2)]),
])
def test_configured_limits(keyed, field, value):
    headers = _bearer(keyed.keys["inference"])
    url = keyed.origin + "/v1/chat/completions"
    r = httpx.post(url, json={**CHAT, field: value}, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "limit_exceeded" and error["param"] == field
    assert "limits." in error["message"]


def test_requests_at_the_limits_are_served(keyed):
    r = httpx.post(keyed.origin + "/v1/chat/completions", headers=_bearer(ADHOC), timeout=60,
                   json={**CHAT, "messages": CHAT["messages"] * 3, "n": 2,
                         "stop": ["a", "b"], "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 2


def test_configured_body_size_is_413(keyed):
    headers = _bearer(keyed.keys["inference"])
    big = "word " * 220_000  # 1.1 MB
    r = httpx.post(keyed.origin + "/v1/embeddings", json={"model": SMOL, "input": big},
                   headers=headers, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(keyed.origin + "/v1/messages", json={**CHAT, "system": big},
                   headers={"x-api-key": keyed.keys["inference"]}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"
    # a chunked body, which declares no length, is counted as it arrives
    chunks = iter([b'{"model": "m", "input": "', b"x" * 700_000, b"x" * 700_000, b'"}'])
    r = httpx.post(keyed.origin + "/v1/embeddings", content=chunks, headers=headers,
                   timeout=60)
    assert r.status_code == 413, r.text
    assert httpx.post(keyed.origin + "/v1/chat/completions", json=CHAT, headers=headers,
                      timeout=60).status_code == 200
