"""The rules behind the security middleware: host names, origins, model names, limits."""

import pytest

from lmserve.api.host_names import HostPolicy, OriginPolicy, split_host
from lmserve.api.limits import RequestLimits, limit_problem
from lmserve.api.security import is_admin_route
from lmserve.models.paths import PathEscapeError, check_model_name


@pytest.mark.parametrize(("header", "host"), [
    ("LocalHost:1234", "localhost"), ("[::1]:8080", "::1"), ("[::1]", "::1"),
    ("127.0.0.1", "127.0.0.1"), ("example.com.:80", "example.com"), ("::1", "::1"),
])
def test_split_host(header, host):
    assert split_host(header) == host


def test_loopback_policy_answers_loopback_names_only():
    policy = HostPolicy("127.0.0.1")
    for ok in ("localhost", "a.b.localhost:1", "127.9.9.9", "[::1]:1", "[::ffff:127.0.0.1]",
               None):
        assert policy.allows(ok), ok
    for bad in ("evil.example", "localhost.evil.example", "0.0.0.0", "10.0.0.1", "",
                "[::]"):
        assert not policy.allows(bad), bad


def test_network_policy():
    assert HostPolicy("0.0.0.0", ["*"]).allows("anything.example")
    policy = HostPolicy("::", ["lmserve.lan"])
    assert policy.allows("LMSERVE.lan:1234") and policy.allows("localhost")
    assert not policy.allows("other.lan")


def test_origins():
    origins = OriginPolicy(["https://dash.example/"])
    for ok in (None, "http://localhost:3000", "http://127.0.0.1", "http://[::1]:5",
               "https://dash.example", "http://app.localhost:8"):
        assert origins.is_local(ok), ok
    for bad in ("null", "https://evil.example", "http://localhost.evil.example",
                "file://", "https://dash.example:444", "chrome-extension://localhost"):
        assert not origins.is_local(bad), bad


@pytest.mark.parametrize(("method", "path", "admin"), [
    ("POST", "/api/v1/models/load", True), ("POST", "//api/v1/models//unload/", True),
    ("GET", "/api/v1/models/download/status/x", True), ("GET", "/API/v1/logs/stream", True),
    ("DELETE", "/api/v1/models/a/b", True), ("POST", "/api/v1/models/default", True),
    ("POST", "/api/v1/models/download/cancel/x", True), ("POST", "/api/v1/models/import", True),
    ("GET", "/api/v1/models", False),
    ("DELETE", "/v1/responses/r", False), ("POST", "/api/v1/chat/completions", False),
])
def test_admin_routes(method, path, admin):
    assert is_admin_route(method, path) is admin


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../b", "~/m.gguf", "C:model",
                                  "a\\b", "a\x00b", " /abs"])
def test_model_names_that_are_paths(name):
    with pytest.raises(PathEscapeError):
        check_model_name(name)


@pytest.mark.parametrize("name", ["local-model", "publisher/repo@q4_k_m", "a..b/c", "my model"])
def test_model_names(name):
    check_model_name(name)


def test_limit_problem():
    limits = RequestLimits(max_messages=2, max_n=2, max_tokens=10, max_stop=1, max_tools=1)
    assert limit_problem({"messages": [1, 2], "n": 2, "max_tokens": 10, "stop": "x"},
                         limits) is None
    assert limit_problem([1, 2, 3], limits) is None
    assert limit_problem({"input": [{}, {}, {}]}, limits)[1] == "input"
    assert limit_problem({"input": [1, 2, 3]}, limits) is None  # token ids to embed
    assert limit_problem({"stop_sequences": ["a", "b"]}, limits)[1] == "stop_sequences"
    assert limit_problem({"max_output_tokens": 11}, limits)[1] == "max_output_tokens"
    assert limit_problem({"n": True, "tools": [{}]}, limits) is None
