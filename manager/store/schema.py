"""The store's tables, and the steps that bring a database written by an older kube up to
them, in place.

`VERSION` is the schema this kube reads and writes. A database records the version it is
at (SQLite: `PRAGMA user_version`; PostgreSQL: the `kube_schema` table). On open,
`upgrade` runs the steps from that version up to `VERSION` in one transaction: the
database is upgraded whole, or left as it was. A database at a newer version than this
kube knows is refused, never read: its rows may mean what this kube cannot tell.

Version 0 is an empty database, or a SQLite file of a kube from before versions were
recorded (up to commit 5aa63bf); step 1 accepts either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from manager.store import kept
from manager.store.base import Database
from shared.errors import StoreError
from shared.states import TaskState

log = logging.getLogger(__name__)

TABLES = """
CREATE TABLE IF NOT EXISTS tasks (
    id {text} PRIMARY KEY,
    name {text} NOT NULL,
    state {text} NOT NULL,
    node {text},
    cpu {real} NOT NULL,
    memory {int} NOT NULL,
    disk {int} NOT NULL,
    created_at {text} NOT NULL,
    record {json} NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state);
CREATE INDEX IF NOT EXISTS tasks_by_node ON tasks (node, state);
CREATE INDEX IF NOT EXISTS tasks_by_age ON tasks (created_at, id);
CREATE TABLE IF NOT EXISTS task_events (
    seq {serial},
    task_id {text} NOT NULL,
    record {json} NOT NULL
);
CREATE INDEX IF NOT EXISTS task_events_by_task ON task_events (task_id, seq);
CREATE TABLE IF NOT EXISTS nodes (
    name {text} PRIMARY KEY,
    record {json} NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    name {text} PRIMARY KEY,
    record {json} NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq {serial},
    source {text} NOT NULL,
    key {text} NOT NULL,
    record {text} NOT NULL,
    reason {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq {serial},
    exchange {text} NOT NULL,
    routing_key {text} NOT NULL,
    body {bytes} NOT NULL
)
"""
"""The tables as kube wrote them before versions were recorded (less `ended_at`)."""

KEYS = {"tasks": "id", "nodes": "name", "services": "name", "task_events": "seq", "jobs": "name"}
"""Each table of records, and the column that keys its rows."""


def _time(value: Any) -> str | None:
    """A time read from a record, written as the store writes times (isoformat)."""
    return datetime.fromisoformat(value).isoformat() if isinstance(value, str) else None


def _fill(
    db: Database, columns: list[str], values: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> None:
    """Set new columns of every task from its record. A row that does not read is left
    as it is: the store quarantines it when it reads it (manager/store/state.py)."""
    updates = []
    for task_id, text in db.query("SELECT id, record FROM tasks"):
        try:
            record = json.loads(text)
            updates.append((*values(record), task_id))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            log.warning(
                "store: task row %r not upgraded, its record does not read: %s", task_id, exc
            )
    sets = ", ".join(f"{column} = ?" for column in columns)
    db.executemany(f"UPDATE tasks SET {sets} WHERE id = ?", updates)


def _tables_and_ended_at(db: Database) -> None:
    """1: the tables, and `ended_at` (when each ended task ended, which the purge of ended
    tasks reads by) filled from the records of a database made before it."""
    for statement in TABLES.format(**db.types).split(";"):
        db.execute(statement)
    if "ended_at" not in db.columns("tasks"):
        db.execute(f"ALTER TABLE tasks ADD COLUMN ended_at {db.types['text']}")
        terminal = {state.value for state in TaskState if state.terminal}
        _fill(
            db,
            ["ended_at"],
            lambda r: (_time(r.get("updated_at")) if r.get("state") in terminal else None,),
        )
    db.execute("CREATE INDEX IF NOT EXISTS tasks_by_end ON tasks (state, ended_at)")


def _where_columns(db: Database) -> None:
    """2: what the manager reads of every task at start (its attempt, the attempt it
    drains) and the metrics read of pending ones, as columns, so that neither parses
    records or needs an engine's JSON functions."""
    for column, kind in [
        ("attempt", "int NOT NULL DEFAULT 0"),
        ("draining_node", "text"),
        ("draining_attempt", "int"),
        ("unplaced_kind", "text"),
        ("not_before", "text"),
    ]:
        name, _, rest = kind.partition(" ")
        db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {db.types[name]} {rest}".rstrip())

    def values(record: dict[str, Any]) -> tuple[Any, ...]:
        draining = record.get("draining") or {}
        unplaced = record.get("unplaced") or {}
        return (
            int(record.get("attempt") or 0),
            draining.get("node"),
            draining.get("attempt"),
            unplaced.get("kind"),
            _time(record.get("not_before")),
        )

    _fill(
        db,
        ["attempt", "draining_node", "draining_attempt", "unplaced_kind", "not_before"],
        values,
    )


def _host_ports(db: Database) -> None:
    """3: the host ports each task holds on its node ("80,443": the fixed ones it asks
    for and those the engine gave it), which a node holds for one task at a time, as a
    column the manager sums at start."""
    db.execute(f"ALTER TABLE tasks ADD COLUMN host_ports {db.types['text']}")

    def values(record: dict[str, Any]) -> tuple[Any, ...]:
        ports = (record.get("spec") or {}).get("ports") or []
        fixed = {p["host"] for p in ports if isinstance(p, dict) and p.get("host")}
        given = (record.get("host_ports") or {}).values()
        held = sorted({int(port) for port in (*fixed, *given)})
        return (",".join(str(port) for port in held) or None,)

    _fill(db, ["host_ports"], values)


def _meta(db: Database) -> None:
    """4: facts about the database itself, by key (the cluster's id, made at first open)."""
    db.execute(
        f"CREATE TABLE IF NOT EXISTS meta (key {db.types['text']} PRIMARY KEY,"
        f" value {db.types['text']} NOT NULL)"
    )


def _leadership(db: Database) -> None:
    """5: the lease (one row: who leads, at which epoch, until when on the database's
    clock, since when) and the managers seen, for `kube managers` (manager/store/lease.py).
    The lease's row exists from the start, held by no one, so that it can be locked."""
    text, integer, real = db.types["text"], db.types["int"], db.types["real"]
    db.execute(
        f"CREATE TABLE IF NOT EXISTS leader (id {integer} PRIMARY KEY, holder {text} NOT NULL,"
        f" epoch {integer} NOT NULL, expires {real} NOT NULL, since {real} NOT NULL)"
    )
    db.execute(
        "INSERT INTO leader (id, holder, epoch, expires, since) VALUES (1, '', 0, 0, 0)"
        " ON CONFLICT (id) DO NOTHING"
    )
    db.execute(
        f"CREATE TABLE IF NOT EXISTS managers (name {text} PRIMARY KEY, host {text} NOT NULL,"
        f" pid {integer} NOT NULL, role {text} NOT NULL, epoch {integer} NOT NULL,"
        f" seen {real} NOT NULL)"
    )


def _secrets(db: Database) -> None:
    """6: secrets and configs, every version kept: the value encrypted (nonce +
    AES-GCM ciphertext, manager/secret_key.py), the id of the key that did it, and an
    HMAC of the plaintext to tell an update that changes nothing."""
    text, integer, data = db.types["text"], db.types["int"], db.types["bytes"]
    db.execute(
        f"CREATE TABLE IF NOT EXISTS secrets (kind {text} NOT NULL, name {text} NOT NULL,"
        f" version {integer} NOT NULL, created_at {text} NOT NULL, size {integer} NOT NULL,"
        f" digest {text} NOT NULL, key_id {text} NOT NULL, sealed {data} NOT NULL,"
        " PRIMARY KEY (kind, name, version))"
    )


def _jobs(db: Database) -> None:
    """8: scheduled jobs (manager/jobs.py), by name; their runs are tasks."""
    db.execute(
        f"CREATE TABLE IF NOT EXISTS jobs (name {db.types['text']} PRIMARY KEY,"
        f" record {db.types['json']} NOT NULL)"
    )


def _volumes(db: Database) -> None:
    """9: the named volumes (docs/volumes.md): the node whose engine holds each, known from
    the first placement of a task that names it."""
    text = db.types["text"]
    db.execute(
        f"CREATE TABLE IF NOT EXISTS volumes (name {text} PRIMARY KEY, node {text} NOT NULL,"
        f" created_at {text} NOT NULL)"
    )


STEPS: list[Callable[[Database], None]] = [
    _tables_and_ended_at,
    _where_columns,
    _host_ports,
    _meta,
    _leadership,
    kept.create,
    _secrets,
    _jobs,
    _volumes,
]
"""STEPS[n] upgrades a database at version n to version n + 1."""

VERSION = len(STEPS)


def upgrade(db: Database) -> None:
    """Bring the database to VERSION, whole or not at all; refuse a newer one."""
    if _checked(db) == VERSION:
        return
    db.begin()
    try:
        db.lock_schema()
        found = _checked(db)  # another manager may have upgraded it while we waited
        log.info("store: upgrading %s from schema version %d to %d", db.where, found, VERSION)
        for version in range(found, VERSION):
            STEPS[version](db)
        db.set_schema_version(VERSION)
        db.commit()
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _checked(db: Database) -> int:
    found = db.schema_version()
    if found > VERSION:
        raise StoreError(
            f"the manager database {db.where} is at schema version {found}, newer than"
            f" this kube's {VERSION}: it was written by a newer kube, which this one would"
            " misread; run that kube (or a newer one), or give this one another database"
        )
    return found
