"""The rows of the `secrets` table: every version of each secret and config, encrypted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from manager.store.base import Database
from shared.files import FileKind, FileRecord

COLUMNS = ("kind", "name", "version", "created_at", "size", "digest", "key_id", "sealed")


@dataclass(frozen=True)
class StoredFile:
    """One version of a secret or config as stored: `sealed` is nonce + AES-GCM
    ciphertext under the store key (manager/secret_key.py), never the value."""

    kind: FileKind
    name: str
    version: int
    created_at: datetime
    size: int
    digest: str
    key_id: str
    sealed: bytes

    def row(self) -> tuple[object, ...]:
        return (
            self.kind.value,
            self.name,
            self.version,
            self.created_at.isoformat(),
            self.size,
            self.digest,
            self.key_id,
            self.sealed,
        )


def _stored(row: Sequence[Any]) -> StoredFile:
    kind, name, version, created, size, digest, key_id, sealed = row
    return StoredFile(
        FileKind(kind),
        str(name),
        int(version),
        datetime.fromisoformat(created),
        int(size),
        str(digest),
        str(key_id),
        bytes(sealed),
    )


def put(db: Database, stored: StoredFile) -> None:
    db.execute(
        f"INSERT INTO secrets ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        stored.row(),
    )


def newest(db: Database, kind: FileKind, name: str, version: int | None) -> StoredFile | None:
    """The version asked for, or the newest; None if there is none."""
    where = "kind = ? AND name = ?" + (" AND version = ?" if version is not None else "")
    params: tuple[object, ...] = (kind.value, name) + ((version,) if version is not None else ())
    rows = db.query(
        f"SELECT {', '.join(COLUMNS)} FROM secrets WHERE {where} ORDER BY version DESC LIMIT 1",
        params,
    )
    return _stored(rows[0]) if rows else None


def listing(db: Database, kind: FileKind) -> list[FileRecord]:
    """Each name of a kind once, at its newest version, by name."""
    rows = db.query(
        "SELECT name, MAX(version), MIN(created_at), MAX(created_at) FROM secrets"
        " WHERE kind = ? GROUP BY name ORDER BY name",
        (kind.value,),
    )
    found = []
    for name, version, created, updated in rows:
        size = db.query(
            "SELECT size FROM secrets WHERE kind = ? AND name = ? AND version = ?",
            (kind.value, name, version),
        )[0][0]
        found.append(
            FileRecord(
                kind=kind,
                name=name,
                version=int(version),
                size=int(size),
                created_at=datetime.fromisoformat(created),
                updated_at=datetime.fromisoformat(updated),
            )
        )
    return found


def remove(db: Database, kind: FileKind, name: str) -> None:
    db.execute("DELETE FROM secrets WHERE kind = ? AND name = ?", (kind.value, name))
