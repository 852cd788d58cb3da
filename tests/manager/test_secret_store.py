"""Secrets and configs in the store, on each engine: versions kept, encrypted, removed whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import secrets
from manager.secret_key import SecretKey
from manager.store import Store, connect
from shared.files import FileKind

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = SecretKey.from_bytes(bytes(range(32)), "test key")


def test_versions_are_kept_encrypted_and_listed_by_their_newest(store_url: str) -> None:
    # given a secret at two versions and a config, committed
    store = Store(store_url)
    marker = b"marker-7f3a-the-value"
    store.put_file(secrets.stored(KEY, FileKind.SECRET, "db", 1, marker, NOW))
    store.put_file(secrets.stored(KEY, FileKind.SECRET, "db", 2, marker + b"2", NOW + timedelta(1)))
    store.put_file(secrets.stored(KEY, FileKind.CONFIG, "db", 1, b"conf", NOW))
    store.commit()
    store.close()
    # then a store opened again lists each at its newest, and decrypts each version
    store = Store(store_url)
    [listed] = store.files(FileKind.SECRET)
    assert (listed.name, listed.version, listed.size) == ("db", 2, len(marker) + 1)
    assert (listed.created_at, listed.updated_at) == (NOW, NOW + timedelta(1))
    first = store.file(FileKind.SECRET, "db", 1)
    assert first is not None
    assert KEY.decrypt("secret", "db", 1, first.key_id, first.sealed) == marker
    assert store.file(FileKind.SECRET, "db") == store.file(FileKind.SECRET, "db", 2)
    # and the value is nowhere in the table as stored
    db = connect(store_url)
    rows = db.query("SELECT * FROM secrets")
    assert len(rows) == 3 and all(b"marker-7f3a" not in repr(row).encode() for row in rows)
    db.close()
    # when it is removed, every version goes, and the config of the same name stays
    store.remove_file(FileKind.SECRET, "db")
    store.commit()
    assert store.file(FileKind.SECRET, "db") is None and store.files(FileKind.SECRET) == []
    assert [c.name for c in store.files(FileKind.CONFIG)] == ["db"]
    store.close()
