"""The store on SQLite: one file, the embedded default for a single manager.

WAL mode lets a reader (the metrics' own connection) read beside the one writer. The
schema's version is the file's `PRAGMA user_version`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from manager.store.base import Row
from shared.errors import StoreBusy, StoreError

TYPES = {
    "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "int": "INTEGER",
    "real": "REAL",
    "text": "TEXT",
    "json": "TEXT",
    "bytes": "BLOB",
}


NOBATCH = nullcontext()  # SQLite runs in the process: nothing to save by sending together


class SqliteDatabase:
    """A connection to a SQLite file; read-only ones never create it."""

    kind = "sqlite"
    types = TYPES
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    share = ""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.where = str(path)
        try:
            if readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread off: the lease's connection is handed from the standby's
            # thread to the keeper's (manager/leadership.py), never used by two at once
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only power loss may drop the
            # last transactions, which redelivery of unacked messages then replays.
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the manager database {path}: {exc}") from exc

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        try:
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise _error(self.where, exc) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            try:
                self._db.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise _error(self.where, exc) from exc

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _error(self.where, exc) from exc

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def begin(self) -> None:
        # IMMEDIATE: take the write lock now, not at the first write, so that a
        # transaction never fails half-way because another connection wrote first.
        self.execute("BEGIN IMMEDIATE")

    def batch(self) -> AbstractContextManager[None]:
        return NOBATCH

    def commit(self) -> None:
        self.execute("COMMIT")

    def lock_schema(self) -> None:
        pass  # BEGIN IMMEDIATE already holds the file's one write lock

    def schema_version(self) -> int:
        return int(self.query("PRAGMA user_version")[0][0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.query(f"PRAGMA table_info({table})")}

    def malformed(self, table: str, column: str) -> list[tuple[str, str]]:
        rows = self.query(
            f"SELECT {column}, record FROM {table} WHERE CASE WHEN typeof(record) != 'text'"
            " THEN 1 WHEN json_valid(record) THEN 0 ELSE 1 END"
        )
        return [(str(key), str(record)) for key, record in rows]

    def close(self) -> None:
        self._db.close()


def _error(where: str, exc: sqlite3.Error) -> StoreError:
    """The engine's error as the store's: StoreBusy when the file's write lock is held."""
    busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return (StoreBusy if busy else StoreError)(f"database {where}: {exc}")
