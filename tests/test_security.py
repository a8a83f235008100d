"""The boundary around a loopback server: DNS rebinding, foreign web pages, path escapes,
and the warning for a network bind without keys."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lmserve.models.bundled import bundled_model_path
from tests.server_process import ServerProcess

FOREIGN_PAGE = "https://evil.example"
LOCAL_PAGE = "http://localhost:5173"
SMOL = "huggingfacetb/smollm2-135m-instruct"
COPY = "me/smol-copy"  # a second library model, loaded only just in time
CHAT = {"max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def _assert_openai_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]


# -- the Host header (DNS rebinding) -----------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:1234", "192.0.2.7",
                                  "localhost.evil.example", "127.0.0.1.nip.io"])
def test_a_foreign_host_is_refused_on_loopback(server, host):
    for path in ("/v1/models", "/api/v1/status", "/v1/does-not-exist"):
        r = httpx.get(server.origin + path, headers={"Host": host}, timeout=10)
        _assert_openai_error(r, 403, "forbidden_host")
    r = httpx.post(server.origin + "/v1/chat/completions", headers={"Host": host},
                   json={"model": SMOL, **CHAT}, timeout=10)
    _assert_openai_error(r, 403, "forbidden_host")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "app.localhost:8080",
                                  "127.0.0.1", "127.1.2.3:99", "[::1]", "[::1]:1234"])
def test_loopback_hosts_are_served(server, host):
    r = httpx.get(server.origin + "/v1/models", headers={"Host": host}, timeout=10)
    assert r.status_code == 200, r.text


# -- foreign web pages and the routes that change the machine ---------------------------


@pytest.fixture(scope="module")
def library_server(tmp_path_factory):
    """A library holding a second model (a symlinked file, as `lmserve import --mode
    symlink` makes) and a publisher folder that is a symlink leading out of it."""
    root = tmp_path_factory.mktemp("models")
    outside = tmp_path_factory.mktemp("outside")
    (root / "me" / "smol-copy").mkdir(parents=True)
    (root / "me" / "smol-copy" / "smol-copy.Q4_1.gguf").symlink_to(bundled_model_path())
    (outside / "secret").mkdir()
    (outside / "secret" / "secret.Q4_1.gguf").symlink_to(bundled_model_path())
    (root / "evil").symlink_to(outside, target_is_directory=True)
    proc = ServerProcess("--parallel", "1", "--context-length", "512",
                         env={"LMSERVE_MODELS_DIR": str(root)})
    yield proc
    proc.stop()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/models/load", {"model": SMOL}),
    ("POST", "/api/v1/models/unload", {"model": SMOL}),
    ("POST", "/api/v1/models/download", {"model": "someone/some-model-GGUF"}),
    ("POST", "/api/v1/models/import", {"path": "/tmp/x.gguf"}),
    ("POST", "/api/v1/models/default", {"model": SMOL}),
    ("GET", "/api/v1/logs/stream", None),
    ("DELETE", "/api/v1/models/" + SMOL, None),
])
def test_a_foreign_page_cannot_change_the_machine(server, method, path, body):
    for origin in (FOREIGN_PAGE, "null", "http://localhost.evil.example"):
        r = httpx.request(method, server.origin + path, json=body, timeout=10,
                          headers={"Origin": origin})
        _assert_openai_error(r, 403, "forbidden_origin")
    assert [m.get("id") for m in server.status()["models"]] == [SMOL]  # still loaded


@pytest.mark.parametrize("origin", [LOCAL_PAGE, "http://127.0.0.1:8000", "http://[::1]:3000",
                                    None])
def test_local_pages_and_plain_clients_may_load(server, origin):
    headers = {"Origin": origin} if origin else {}
    r = httpx.post(server.origin + "/api/v1/models/load", json={"model": SMOL},
                   headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "already_loaded"


def test_a_foreign_page_may_chat_with_loaded_models(server):
    r = httpx.post(server.origin + "/v1/chat/completions", json={"model": SMOL, **CHAT},
                   headers={"Origin": FOREIGN_PAGE}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"


def test_preflight_allows_private_network_access(server):
    r = httpx.options(server.origin + "/v1/chat/completions", timeout=10, headers={
        "Origin": FOREIGN_PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Private-Network": "true"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-private-network"] == "true"


def test_jit_load_by_a_foreign_page_is_refused(library_server):
    proc = library_server
    url = proc.origin + "/v1/chat/completions"
    r = httpx.post(url, json={"model": COPY, **CHAT}, headers={"Origin": FOREIGN_PAGE},
                   timeout=60)
    _assert_openai_error(r, 403, "model_load_forbidden")
    assert r.json()["error"]["param"] == "model"
    assert COPY not in [m["id"] for m in proc.status()["models"]]

    r = httpx.post(url, json={"model": COPY, **CHAT}, headers={"Origin": LOCAL_PAGE},
                   timeout=120)
    assert r.status_code == 200, r.text
    # once loaded, the foreign page may use it like any loaded model
    r = httpx.post(url, json={"model": COPY, **CHAT}, headers={"Origin": FOREIGN_PAGE},
                   timeout=60)
    assert r.status_code == 200, r.text
    httpx.post(proc.origin + "/api/v1/models/unload", json={"model": COPY}, timeout=30)


# -- no path escapes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    str(bundled_model_path()),  # an absolute path to a real GGUF
    "../../" + bundled_model_path().name,
    "me/../me/smol-copy",
    "~/model.gguf",
    "..\\evil\\x.gguf",
])
def test_load_refuses_file_paths(library_server, name):
    r = httpx.post(library_server.origin + "/api/v1/models/load", json={"model": name},
                   timeout=30)
    _assert_openai_error(r, 400, "path_escape")
    assert r.json()["error"]["param"] == "model"


def test_a_symlinked_folder_leading_out_is_not_in_the_library(library_server):
    proc = library_server
    keys = [m["key"] for m in httpx.get(proc.origin + "/api/v1/models", timeout=30)
            .json()["data"]]
    assert COPY in keys and not any(k.startswith("evil/") for k in keys)
    r = httpx.post(proc.origin + "/api/v1/models/load", json={"model": "evil/secret"},
                   timeout=30)
    _assert_openai_error(r, 404, "model_not_found")
    assert "the link leads outside the models folder" in proc.log()


def test_download_refuses_escapes(library_server):
    url = library_server.origin + "/api/v1/models/download"
    r = httpx.post(url, json={"model": "evil/secret"}, timeout=30)  # into the symlink
    _assert_openai_error(r, 400, "path_escape")
    r = httpx.post(url, json={"model": "../outside"}, timeout=30)
    assert r.status_code == 400, r.text
    assert httpx.get(library_server.origin + "/health", timeout=10).status_code == 200


# -- a network bind ----------------------------------------------------------------------


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="this machine has no IPv6 loopback")
def test_network_bind_without_keys_warns_and_checks_hosts():
    proc = ServerProcess("--host", "::", "--model", "none")
    try:
        assert "reachable from the network, and needs no API key" in proc.log()
        status = subprocess.run([sys.executable, "-m", "lmserve", "server", "status"],
                                env=proc.env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0
        assert "needs no API key" in status.stderr

        ipv6 = f"http://[::1]:{proc.port}"
        assert httpx.get(ipv6 + "/v1/models", timeout=10).status_code == 200
        assert httpx.get(proc.origin + "/v1/models", timeout=10).status_code == 200
        hostname = os.uname().nodename
        r = httpx.get(ipv6 + "/v1/models", headers={"Host": f"{hostname}:{proc.port}"},
                      timeout=10)
        assert r.status_code == 200, r.text
        r = httpx.get(ipv6 + "/v1/models", headers={"Host": "evil.example"}, timeout=10)
        _assert_openai_error(r, 403, "forbidden_host")
        r = httpx.get(ipv6 + "/v1/models", headers={"Host": "192.0.2.7"}, timeout=10)
        _assert_openai_error(r, 403, "forbidden_host")
    finally:
        proc.stop()


def test_configured_hosts_and_origins(tmp_path: Path):
    (tmp_path / "config.toml").write_text(
        '[security]\nallowed_hosts = "lmserve.lan"\n'
        'allowed_origins = "https://dashboard.lan"\n')
    proc = ServerProcess("--host", "0.0.0.0", "--model", "none", home=tmp_path)
    try:
        get = proc.origin + "/v1/models"
        assert httpx.get(get, headers={"Host": "lmserve.lan:1234"},
                         timeout=10).status_code == 200
        # configured hosts replace the machine's own names
        r = httpx.get(get, headers={"Host": os.uname().nodename}, timeout=10)
        _assert_openai_error(r, 403, "forbidden_host")
        unload = proc.origin + "/api/v1/models/unload"
        r = httpx.post(unload, json={"all": True}, headers={"Origin": "https://dashboard.lan"},
                       timeout=10)
        assert r.status_code == 200, r.text
        r = httpx.post(unload, json={"all": True}, headers={"Origin": FOREIGN_PAGE},
                       timeout=10)
        _assert_openai_error(r, 403, "forbidden_origin")
    finally:
        proc.stop()
