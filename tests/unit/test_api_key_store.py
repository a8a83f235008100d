"""The key file: hashes only, scopes, revocation seen at once, and a broken file that
keeps keys required."""

import pytest

from lmserve import api_keys
from lmserve.api_keys import KeyRing, create_key, read_keys, revoke_key


def test_keys_are_hashed_scoped_and_revocable(tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing(path)
    assert not ring.enabled
    secret, record = create_key("ci", "inference", path)
    admin, _ = create_key(None, "admin", path)
    assert secret not in path.read_text() and record.sha256 in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert ring.enabled
    assert ring.scope_of(secret) == "inference" and ring.scope_of(admin) == "admin"
    assert ring.scope_of(secret + "x") is None and ring.scope_of("") is None
    revoke_key("ci", path)
    assert ring.scope_of(secret) is None and ring.scope_of(admin) == "admin"
    assert [k.scope for k in read_keys(path)] == ["admin"]
    with pytest.raises(LookupError):
        revoke_key("ci", path)
    with pytest.raises(ValueError):
        create_key("x", "root", path)  # type: ignore[arg-type]


def test_adhoc_key_is_admin(tmp_path):
    ring = KeyRing(tmp_path / "none.json", "s3cret")
    assert ring.enabled and ring.scope_of("s3cret") == "admin"
    assert ring.scope_of("S3CRET") is None


def test_a_broken_key_file_keeps_keys_required(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    ring = KeyRing(path)
    assert ring.enabled and ring.scope_of("anything") is None
    assert api_keys.digest("a") != api_keys.digest("b")
