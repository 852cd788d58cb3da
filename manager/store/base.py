"""The contract between the manager's store and the database engine under it.

The store (manager/store/state.py) writes its SQL once, with `?` placeholders and the
SQL both engines speak (savepoints, `INSERT ... ON CONFLICT ... DO UPDATE`, row-value
comparisons); a `Database` runs it on one engine and translates that engine's errors into
StoreError. What the engines do differently sits behind the few methods below:
manager/store/sqlite.py (the embedded default, one manager) and
manager/store/postgres.py (PostgreSQL, for several managers).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = tuple[Any, ...]


class Database(Protocol):
    """One connection to the store's database, used from one thread."""

    kind: str
    """The engine, as a URL's scheme names it: "sqlite" or "postgresql"."""

    where: str
    """The database, for messages (a file path, or a URL without its password)."""

    types: dict[str, str]
    """The engine's column types for the schema's placeholders (manager/store/schema.py)."""

    now: str
    """An SQL expression: the database server's clock, in seconds since the Unix epoch.
    Leases are measured on it, never on a manager's clock (manager/store/lease.py)."""

    share: str
    """What ends a SELECT that must hold the rows it read until the transaction ends
    (PostgreSQL: FOR SHARE; SQLite: nothing, its write transaction holds the file)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run `sql` once per row; nothing at all when there are no rows."""
        ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    @property
    def in_transaction(self) -> bool: ...

    def begin(self) -> None:
        """Begin a transaction that holds the right to write until it ends."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Statements sent together, their errors raised at the end at the latest (a
        PostgreSQL pipeline: one round trip); on SQLite, as they come."""
        ...

    def commit(self) -> None:
        """End the open transaction, keeping its writes; a StoreError if they were not
        all kept (the transaction is then over, rolled back)."""
        ...

    def lock_schema(self) -> None:
        """Hold, until the open transaction ends, the right to upgrade the schema."""
        ...

    def schema_version(self) -> int:
        """The schema's version as recorded in the database (0: none recorded)."""
        ...

    def set_schema_version(self, version: int) -> None:
        """Record the schema's version, in the open transaction."""
        ...

    def columns(self, table: str) -> set[str]:
        """The columns a table has (none: it does not exist)."""
        ...

    def malformed(self, table: str, column: str) -> list[tuple[str, str]]:
        """The (key, text) of rows whose record is not JSON at all (none where the
        engine's column type forbids such a row)."""
        ...

    def close(self) -> None: ...
