"""CORS is open by default so a local web page can call the API; --no-cors closes it."""

import httpx
import pytest

from tests.server_process import ServerProcess

PAGE = "http://localhost:3000"


def test_preflight_from_a_local_page(server):
    r = httpx.options(server.origin + "/v1/chat/completions", timeout=10, headers={
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("path", ["/v1/models", "/v1/does-not-exist"])
def test_every_response_allows_any_origin(server, path):
    r = httpx.get(server.origin + path, headers={"Origin": PAGE}, timeout=10)
    assert r.headers["access-control-allow-origin"] == "*"
    assert httpx.get(server.origin + path, timeout=10).headers[
        "access-control-allow-origin"] == "*"


def test_streamed_response_allows_any_origin(server):
    with httpx.stream("POST", server.origin + "/v1/chat/completions", timeout=60,
                      headers={"Origin": PAGE},
                      json={"model": "m", "stream": True, "max_tokens": 2,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.headers["access-control-allow-origin"] == "*"
        r.read()


def test_no_cors_turns_it_off():
    proc = ServerProcess("--no-cors", "--parallel", "1")
    try:
        r = httpx.get(proc.origin + "/v1/models", headers={"Origin": PAGE}, timeout=10)
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        pre = httpx.options(proc.origin + "/v1/models", timeout=10, headers={
            "Origin": PAGE, "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in pre.headers
    finally:
        proc.stop()
