"""Stores for tests, on each engine: a SQLite file, or a schema of the test run's own
PostgreSQL database (created at the start of the run, dropped at its end, failed or not).

Tests on PostgreSQL are marked `postgres`: without a server they are skipped with the
reason (failed in CI, as a missing broker is: tests/conftest.py).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from manager.store import sqlite_url

POSTGRES_URL = os.environ.get("KUBE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/")
"""The test server, as a URL without a database (trust auth for its user)."""

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def run_database(unavailable: Callable[[str], None]) -> Iterator[str]:
    """A database of this test run's own; its URL. Dropped after, even when tests fail."""
    name = f"kube_test_store_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(f"{POSTGRES_URL}postgres", autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        unavailable(
            f"needs PostgreSQL at {POSTGRES_URL} (KUBE_TEST_POSTGRES_URL), which does not"
            f" answer: {exc} (run .ci/run, which starts it; or deselect with -m 'not postgres')"
        )
        raise  # unavailable() skips or fails
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL}{name}"
    finally:
        # on a connection of its own: a test may have restarted the server meanwhile
        # (tests/faults/test_postgres_restart.py), which closed any older one
        with psycopg.connect(f"{POSTGRES_URL}postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Stores:
    """Makes URLs of new, empty stores on one engine."""

    def __init__(self, engine: str, database: str | None, directory: Path) -> None:
        self.engine = engine
        self._database = database
        self._directory = directory

    def new(self) -> str:
        name = f"s{uuid.uuid4().hex[:12]}"
        if self._database is None:
            return sqlite_url(Path(tempfile.mkdtemp(dir=self._directory)) / "m.db")
        with psycopg.connect(self._database, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        # every connection made from the URL reads and writes that schema
        return f"{self._database}?options={quote(f'-csearch_path={name}')}"
