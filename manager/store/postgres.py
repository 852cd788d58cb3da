"""The store on PostgreSQL (psycopg 3): for managers that must outlive one machine.

The connection is in autocommit mode and the store issues BEGIN, SAVEPOINT and COMMIT
itself, as it does on SQLite. Records are kept in `json` columns: PostgreSQL checks them
on the way in, so no row can hold text that is not JSON (SQLite needs a check at start
for that), and it keeps their text as written (a `jsonb` column would refuse a string
holding NUL, which a task's command may). Text sorts byte-wise (COLLATE "C"), as in
SQLite, so that pages and names come in the same order on either engine. The schema's
version is the one row of the `kube_schema` table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.string import TextLoader

from manager.store.base import Row
from shared.errors import StoreError, StoreUnavailable

TYPES = {
    "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    "int": "BIGINT",
    "real": "DOUBLE PRECISION",
    "text": 'TEXT COLLATE "C"',
    "json": "JSON",
    "bytes": "BYTEA",
}

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when the URL does not say (libpq waits for ever)."""

LINK_CHECKS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""libpq's checks of a silent link, unless the URL sets them: a cut link (no RST, a
server's host gone) fails the connection's statements within about 10 s instead of
TCP's minutes of retransmissions, so that a leader finds out, stops acting and
reconnects (manager/leadership.py)."""

MIGRATION_LOCK = 0x6B756265  # "kube": one manager at a time upgrades the schema


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (the store's SQL has no `%`)."""
    return sql.replace("?", "%s")


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "a PostgreSQL URL that cannot be read"
    if "password" in params:
        params["password"] = "***"
    host, db = params.get("host", ""), params.get("dbname", "")
    return f"postgresql://{params.get('user', '')}@{host}:{params.get('port', '')}/{db}"


class PostgresDatabase:
    """A connection to a PostgreSQL database, given by a libpq URL."""

    kind = "postgresql"
    types = TYPES
    # clock_timestamp, not now(): now() is the transaction's start
    now = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    share = " FOR SHARE"

    def __init__(self, url: str) -> None:
        self.where = redacted(url)
        try:
            given = conninfo_to_dict(url)
            defaults = {"connect_timeout": CONNECT_TIMEOUT, **LINK_CHECKS}
            conninfo = make_conninfo(
                url, **{key: given.get(key, value) for key, value in defaults.items()}
            )
            self._conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:  # the server does not answer (yet)
            raise StoreUnavailable(f"cannot open the manager database {self.where}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the manager database {self.where}: {exc}") from exc
        # records come back as the text that was written, parsed only by the store
        self._conn.adapters.register_loader("json", TextLoader)
        self._cur = self._conn.cursor()

    def _error(self, exc: psycopg.Error) -> StoreError:
        """The engine's error as ours: StoreUnavailable when the connection is gone (the
        server restarted, the backend was terminated, the link cut)."""
        if self._conn.broken or self._conn.closed:
            return StoreUnavailable(f"database {self.where}: the connection is lost: {exc}")
        return StoreError(f"database {self.where}: {exc}")

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        try:
            self._cur.execute(_placeholders(sql), params)
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            try:
                self._cur.executemany(_placeholders(sql), rows)
            except psycopg.Error as exc:
                raise self._error(exc) from exc

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        try:
            return self._cur.execute(_placeholders(sql), params).fetchall()
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def begin(self) -> None:
        self.execute("BEGIN")

    def schema_version(self) -> int:
        if not self.columns("kube_schema"):
            return 0
        rows = self.query("SELECT version FROM kube_schema")
        return int(rows[0][0]) if rows else 0

    def set_schema_version(self, version: int) -> None:
        self.execute("CREATE TABLE IF NOT EXISTS kube_schema (version INTEGER NOT NULL)")
        self.execute("DELETE FROM kube_schema")
        self.execute("INSERT INTO kube_schema (version) VALUES (?)", (version,))

    @contextmanager
    def batch(self) -> Iterator[None]:
        try:
            with self._conn.pipeline():
                yield
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def commit(self) -> None:
        if self._conn.broken or self._conn.closed:
            raise StoreUnavailable(f"database {self.where}: the connection is lost")
        # After an error outside a savepoint (a read that failed), PostgreSQL answers
        # COMMIT by rolling back, without an error: say so, or the batch would be acked.
        if self._conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            self.execute("ROLLBACK")
            raise StoreError(f"database {self.where}: the transaction failed and was rolled back")
        self.execute("COMMIT")

    def lock_schema(self) -> None:
        """Hold, until the transaction ends, the right to upgrade the schema."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def columns(self, table: str) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {str(name) for (name,) in rows}

    def malformed(self, table: str, column: str) -> list[tuple[str, str]]:
        return []  # a json column holds JSON only

    def close(self) -> None:
        self._conn.close()
