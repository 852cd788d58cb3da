"""The secrets key file: made private, refused when others may read it or it is malformed;
values encrypted under it are bound to their row and to the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from manager.secret_key import SecretKey, create_key_file
from shared.errors import SecretError, SettingsError
from shared.sealing import seal


def test_a_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.key"
    assert create_key_file(path)
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not create_key_file(path) and path.read_text() == first  # never replaced
    assert len(bytes.fromhex(first.strip())) == 32


def test_a_key_others_may_read_or_a_malformed_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="mode 0644: others may read it; chmod 600"):
        SecretKey.load(path)
    path.write_text("not hex\n")
    path.chmod(0o600)
    with pytest.raises(SettingsError, match="64 hex digits"):
        SecretKey.load(path)
    with pytest.raises(SettingsError, match="cannot read the secrets key"):
        SecretKey.load(tmp_path / "missing.key")


def test_a_stored_value_decrypts_only_as_its_row_and_with_its_key(tmp_path: Path) -> None:
    key = SecretKey.from_bytes(bytes(range(32)), "key-a")
    other = SecretKey.from_bytes(bytes(32), "key-b")
    sealed = key.encrypt("secret", "db", 1, b"hunter2")
    assert b"hunter2" not in sealed
    assert key.decrypt("secret", "db", 1, key.key_id, sealed) == b"hunter2"
    with pytest.raises(SecretError, match="secret db version 2 does not decrypt") as moved:
        key.decrypt("secret", "db", 2, key.key_id, sealed)
    with pytest.raises(SecretError, match=f"encrypted with key {key.key_id}") as wrong:
        other.decrypt("secret", "db", 1, key.key_id, sealed)
    for error in (moved, wrong):
        assert "hunter2" not in str(error.value)


def test_a_value_sealed_for_the_manager_opens_with_its_key_only() -> None:
    key = SecretKey.from_bytes(bytes(range(32)), "k")
    box = seal(key.public_key(), b"v", b"kube secret db")
    assert key.opened(box, b"kube secret db") == b"v"
    with pytest.raises(SecretError):
        SecretKey.from_bytes(bytes(32), "other").opened(box, b"kube secret db")
    assert key.digest(b"v") != SecretKey.from_bytes(bytes(32), "o").digest(b"v")  # keyed
