"""[[remote]] entries in config.toml, and how a pool picks an upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmserve.config import load_config, set_value
from lmserve.remote.entries import RemoteModel, load_remotes, parse_entry, save_remotes
from lmserve.remote.pool import Upstream, UpstreamPool


def test_entries_round_trip_beside_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    set_value("server.port", "8080", path)
    entry = RemoteModel("big", ("http://a:8000/v1", "http://b:8000/v1"),
                        api_key_env="BIG_KEY", upstream_model="org/Big", read_timeout=30.0)
    save_remotes([entry, RemoteModel("small", ("http://c:1234/v1",))], path)
    assert load_remotes(path) == [entry, RemoteModel("small", ("http://c:1234/v1",))]
    set_value("server.cors", "false", path)  # saving settings keeps the entries
    assert [e.id for e in load_remotes(path)] == ["big", "small"]
    assert load_config(path).server.port == 8080
    assert "BIG_KEY" in path.read_text() and "secret" not in path.read_text()


@pytest.mark.parametrize(("text", "problem"), [
    ('[[remote]]\nupstreams = ["http://a"]\n', "needs an `id`"),
    ('[[remote]]\nid = "x"\n', "needs `upstreams`"),
    ('[[remote]]\nid = "x"\nupstreams = ["ftp://a"]\n', "not an http(s) URL"),
    ('[[remote]]\nid = "x"\nupstreams = ["http://a"]\nread_timeout = -1\n', "positive"),
    ('[[remote]]\nid = "x"\nupstreams = ["http://a"]\napi_key = "k"\n', "unknown"),
    ('[[remote]]\nid = "x"\nupstreams = ["http://a"]\n' * 2, "listed twice"),
])
def test_bad_entries_are_refused_with_a_reason(tmp_path: Path, text: str,
                                               problem: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_remotes(path)


def test_a_bare_upstream_gets_v1() -> None:
    entry = parse_entry({"id": "x", "upstreams": ["http://node:1234/"]}, "test")
    assert entry.upstreams == ("http://node:1234/v1",)


def test_least_outstanding_first_then_in_turn() -> None:
    a, b, c = Upstream("a"), Upstream("b"), Upstream("c")
    pool = UpstreamPool([a, b, c])
    a.outstanding, b.outstanding, c.outstanding = 2, 1, 1
    assert {pool.pick([]) for _ in range(4)} == {b, c}
    c.mark_down("refused")
    assert pool.pick([]) is b and pool.pick([b]) is a
    a.mark_down("refused")
    b.mark_down("refused")
    assert pool.pick([b]) in (a, c)  # all down: still tried rather than refused
    assert pool.pick([a, b, c]) is None
