"""The manager's state in SQLite: tasks, their history, nodes and the outbox.

WAL mode, one transaction per batch of deliveries: the first decision recorded begins
it, each decision is written whole or not at all within it (a savepoint), and `commit`
ends it before anything it recorded is published or acked. Each delivery is a unit of
its own within the batch (`begin_unit`, then `keep_unit` or `drop_unit`): a savepoint that
is rolled back, with what it moved in memory, when its handler fails, so one bad
delivery never takes the rest of its batch with it. A manager killed at any
moment restarts with the batches it committed, re-sends their outbox, and is sent again
every delivery of the batch it lost (none of them was acked).
A node's allocated resources are not stored: they are summed from the tasks placed on it
when the store opens, then moved with each decision it records (manager/holdings.py).
Those caches always mirror the open transaction: a unit dropped undoes its moves, and a
transaction that fails to commit is rolled back and the caches are read again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from manager.attempts import Attempts
from manager.effects import Decision, Outgoing, Removal
from manager.holdings import HOLDING, Hold, Holdings, Leftovers, Reserved
from manager.nodes import PLACED, Where
from shared.errors import StoreError
from shared.models import DrainingAttempt, NodeRecord, ServiceRecord, TaskEvent, TaskRecord
from shared.states import TaskState

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    node TEXT,
    cpu REAL NOT NULL,
    memory INTEGER NOT NULL,
    disk INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state);
CREATE INDEX IF NOT EXISTS tasks_by_node ON tasks (node, state);
CREATE INDEX IF NOT EXISTS tasks_by_age ON tasks (created_at, id);
CREATE TABLE IF NOT EXISTS task_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_events_by_task ON task_events (task_id, seq);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class Store:
    """SQLite-backed state; one connection, used from the manager's bus thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only power loss may drop the
            # last transactions, which redelivery of unacked messages then replays.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            _quarantine_malformed(self._db)
            _add_ended_at(self._db)
            self.cluster_id = _cluster_id(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the manager database {self.path}: {exc}") from exc
        self._closed = False
        self._unit: list[Callable[[], None]] | None = None  # undo steps of the open unit
        self._unit_begun = False  # whether the open unit has written (its savepoint exists)
        self._holdings = Holdings()
        self._leftovers = Leftovers()
        self._attempts = Attempts()
        self._nodes: dict[str, NodeRecord] = {}
        self._sharing: dict[str, tuple[str, ...]] | None = None  # address -> its nodes
        self._load_caches()
        self.commit()  # what was quarantined while loading

    def _load_caches(self) -> None:
        """Read the in-memory mirrors (holdings, attempts, nodes) from the tables."""
        self._holdings = Holdings()
        for row in self._query(
            f"SELECT name, node, cpu, memory, disk, {_PORTS} FROM tasks"
            f" WHERE state IN ({','.join('?' * len(HOLDING))}) AND node IS NOT NULL",
            [state.value for state in HOLDING],
        ):
            self._holdings.add(_hold_of(row))
        self._attempts = Attempts()
        for task_id, where in self._where(
            f"state IN ({','.join('?' * len(PLACED))}) OR json_extract(record, '$.draining')"
            " IS NOT NULL",
            [state.value for state in PLACED],
        ).items():
            self._attempts.put(task_id, where)
        self._nodes = {
            node.name: node
            for node in self._parsed(
                NodeRecord, "nodes", "name", self._query("SELECT name, record FROM nodes")
            )
        }

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Writes that land whole or not at all, in the open transaction (begun if none is)."""
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            if self._unit is not None and not self._unit_begun:
                self._db.execute("SAVEPOINT unit")
                self._unit_begun = True
            self._db.execute("SAVEPOINT write")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK TO write")
                self._db.execute("RELEASE write")
                raise
            self._db.execute("RELEASE write")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}") from exc

    @property
    def uncommitted(self) -> bool:
        """Whether a transaction is open: something was recorded since the last commit."""
        return self._db.in_transaction

    # -- units: one delivery's writes, kept or dropped whole ----------------------------

    def begin_unit(self) -> None:
        """Start a unit (one delivery's writes); its savepoint is taken at its first write."""
        if self._unit is not None:
            raise StoreError("a unit is already open: units do not nest")
        self._unit = []
        self._unit_begun = False

    def keep_unit(self) -> None:
        """The unit's handler succeeded: its writes join the batch's transaction."""
        try:
            if self._unit_begun:
                self._execute("RELEASE unit")
        finally:
            self._unit, self._unit_begun = None, False

    def drop_unit(self) -> None:
        """The unit's handler failed: roll back its writes, and undo what they moved in
        memory, newest first. The batch's other units are untouched."""
        undo, begun = self._unit or [], self._unit_begun
        self._unit, self._unit_begun = None, False
        if begun:
            self._execute("ROLLBACK TO unit")
            self._execute("RELEASE unit")
        for step in reversed(undo):
            step()

    def _execute(self, sql: str) -> None:
        try:
            self._db.execute(sql)
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}") from exc

    def commit(self) -> None:
        """End the open transaction: what it recorded may now be published and acked.

        If the commit fails, the transaction is rolled back and the in-memory caches are
        read again from what is committed: the batch's deliveries, unacked, come again.
        """
        if self._unit_begun:
            raise StoreError("cannot commit while a unit is open")
        if self._db.in_transaction:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._abandon()
                raise StoreError(f"database {self.path}: {exc}") from exc

    def _abandon(self) -> None:
        """Roll back the open transaction and read the caches again from the tables."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:  # a failed COMMIT may have rolled back already
            log.warning("store: rolling back after a failed commit: %s", exc)
        self._load_caches()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {exc}") from exc

    # -- writes ------------------------------------------------------------------------

    def record(self, decision: Decision) -> None:
        """Write a decision's tasks, history, nodes and outbox, whole, in the open transaction."""
        final = {task.id: task for task in decision.tasks}  # the last word on each task
        before = self._holds(final)
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO tasks"
                " (id, name, state, node, cpu, memory, disk, created_at, record, ended_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " node = excluded.node, record = excluded.record, ended_at = excluded.ended_at",
                [
                    (
                        task.id,
                        task.name,
                        task.state.value,
                        task.node,
                        task.spec.cpu,
                        task.spec.memory,
                        task.spec.disk,
                        task.created_at.isoformat(),
                        task.model_dump_json(),
                        task.updated_at.isoformat() if task.state.terminal else None,
                    )
                    for task in final.values()
                ],
            )
            db.executemany(
                "INSERT INTO task_events (task_id, record) VALUES (?, ?)",
                [(task_id, event.model_dump_json()) for task_id, event in decision.events],
            )
            db.executemany(
                "INSERT INTO nodes (name, record) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                [(node.name, node.model_dump_json()) for node in decision.nodes],
            )
            db.executemany(
                "INSERT INTO services (name, record) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                [(service.name, service.model_dump_json()) for service in decision.services],
            )
            db.executemany(
                "INSERT INTO outbox (exchange, routing_key, body) VALUES (?, ?, ?)",
                [(out.exchange, out.routing_key, out.body) for out in decision.outgoing],
            )
            _delete(db, decision.removed)
        holdings, attempts, nodes, undo = self._holdings, self._attempts, self._nodes, self._unit
        for hold in before.values():
            holdings.remove(hold)
            if undo is not None:
                undo.append(partial(holdings.add, hold))
        for task in final.values():
            if task.state in HOLDING and task.node is not None:
                added = _hold(task)
                holdings.add(added)
                if undo is not None:
                    undo.append(partial(holdings.remove, added))
            previous = attempts.put(task.id, Where.of(task))
            if undo is not None:
                undo.append(partial(attempts.restore, task.id, previous))
        for node in decision.nodes:
            known = nodes.get(node.name)
            if undo is not None:
                undo.append(partial(self._put_node, node.name, known))
            if known is None or known.address != node.address:
                self._sharing = None
            nodes[node.name] = node
        for task_id in decision.removed.tasks:  # ended: they hold no resources
            previous = attempts.put(task_id, Where(None, 0, TaskState.COMPLETED))
            if undo is not None:
                undo.append(partial(attempts.restore, task_id, previous))
        for name in decision.removed.nodes:
            if undo is not None:
                undo.append(partial(self._put_node, name, nodes.get(name)))
                reserved = holdings.nodes.get(name)
                if reserved is not None:
                    undo.append(partial(holdings.nodes.__setitem__, name, reserved))
            nodes.pop(name, None)
            holdings.nodes.pop(name, None)
            self._leftovers.forget(name)
            self._sharing = None

    def _put_node(self, name: str, node: NodeRecord | None) -> None:
        """Put back a node's record as it was before a dropped unit."""
        _put(self._nodes, name, node)
        self._sharing = None

    def heard_leftovers(self, node: str, ports: Iterable[int], first: bool, whole: bool) -> bool:
        """Note the host ports that a heartbeat part lists as held on the node by containers
        of uncounted attempts (manager/holdings.py `Leftovers`); whether one was freed."""
        return self._leftovers.heard(node, frozenset(ports), first, whole)

    def _holds(self, tasks: dict[str, TaskRecord]) -> dict[str, Hold]:
        """The claims the given tasks hold now, as recorded."""
        if not tasks:
            return {}
        marks = ",".join("?" * len(tasks))
        rows = self._query(
            f"SELECT id, name, node, cpu, memory, disk, {_PORTS} FROM tasks"
            f" WHERE id IN ({marks}) AND state IN ({','.join('?' * len(HOLDING))})"
            " AND node IS NOT NULL",
            [*tasks, *(state.value for state in HOLDING)],
        )
        return {str(row[0]): _hold_of(row[1:]) for row in rows}

    def outbox(self, limit: int = 1000) -> list[tuple[int, Outgoing]]:
        """Messages recorded but not yet confirmed by the broker, oldest first."""
        rows = self._query(
            "SELECT seq, exchange, routing_key, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
        )
        return [
            (int(seq), Outgoing(str(exchange), str(key), bytes(body)))
            for seq, exchange, key, body in rows
        ]

    def sent(self, seqs: list[int]) -> None:
        """Forget outbox messages the broker confirmed (in the open transaction: a crash
        before it commits only sends them again)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])

    # -- reads -------------------------------------------------------------------------

    def _parsed(
        self, model: type[M], table: str, column: str, rows: Iterable[tuple[Any, ...]]
    ) -> list[M]:
        """The records of (key, record) rows; a row that no longer reads as its model
        (written by a kube that checked less, or edited by hand) is moved to the
        quarantine table, in the open transaction, and logged, so that one bad row never
        stops the manager. A quarantined task's container, if any, is stopped by the next
        heartbeat that lists it, as any container the manager does not know."""
        records = []
        for key, text in rows:
            try:
                record = model.model_validate_json(str(text))
            except ValidationError as exc:
                self._quarantine(table, column, str(key), str(text), str(exc))
                continue
            named = getattr(record, column, key)
            if named != key:  # the row's key is what queries and caches go by
                reason = f"the record names {column} {named!r}, its row {key!r}"
                self._quarantine(table, column, str(key), str(text), reason)
                continue
            records.append(record)
        return records

    def _quarantine(self, table: str, column: str, key: str, text: str, reason: str) -> None:
        log.error("store: %s row %r cannot be read; moved to quarantine: %s", table, key, reason)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO quarantine (source, key, record, reason) VALUES (?, ?, ?, ?)",
                (table, key, text, reason),
            )
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))

    def quarantined(self) -> list[tuple[str, str, str]]:
        """Rows moved aside as unreadable: (table, key, reason), oldest first."""
        rows = self._query("SELECT source, key, reason FROM quarantine ORDER BY seq")
        return [(str(source), str(key), str(reason)) for source, key, reason in rows]

    def _tasks(self, where: str = "", params: Iterable[object] = ()) -> list[TaskRecord]:
        rows = self._query(f"SELECT id, record FROM tasks {where}", params)
        return self._parsed(TaskRecord, "tasks", "id", rows)

    def task(self, task_id: str) -> TaskRecord | None:
        found = self._tasks("WHERE id = ?", (task_id,))
        return found[0] if found else None

    def tasks(self, states: Iterable[TaskState] | None = None) -> list[TaskRecord]:
        """Tasks, oldest first, optionally only those in the given states."""
        if states is None:
            return self._tasks("ORDER BY created_at, id")
        wanted = [state.value for state in states]
        marks = ",".join("?" * len(wanted))
        return self._tasks(f"WHERE state IN ({marks}) ORDER BY created_at, id", wanted)

    def ended(self, limit: int) -> tuple[int, list[TaskRecord]]:
        """How many tasks have ended, and the `limit` that ended first, oldest first."""
        terminal = [state.value for state in TaskState if state.terminal]
        marks = ",".join("?" * len(terminal))
        ((count,),) = self._query(f"SELECT COUNT(*) FROM tasks WHERE state IN ({marks})", terminal)
        oldest = self._tasks(
            f"WHERE state IN ({marks}) ORDER BY ended_at, id LIMIT ?", [*terminal, limit]
        )
        return int(count), oldest

    def tasks_page(self, after: str | None, limit: int) -> list[tuple[str, TaskRecord]]:
        """Up to `limit` tasks, oldest first, after the key `after` (None: from the first);
        each with its key ("<created_at>/<id>", ids have no slash)."""
        if after is None:
            rows = self._query(
                "SELECT id, record, created_at FROM tasks ORDER BY created_at, id LIMIT ?",
                (limit,),
            )
        else:
            created, _, task_id = after.rpartition("/")
            rows = self._query(
                "SELECT id, record, created_at FROM tasks WHERE (created_at, id) > (?, ?)"
                " ORDER BY created_at, id LIMIT ?",
                (created, task_id, limit),
            )
        keys = {str(i): f"{created}/{i}" for i, _, created in rows}
        records = self._parsed(TaskRecord, "tasks", "id", [(i, r) for i, r, _ in rows])
        return [(keys[task.id], task) for task in records]

    def where(self, ids: Iterable[str]) -> dict[str, Where]:
        """Where each of these tasks holds an attempt (placed on a node, or draining from
        one); a task that holds none is left out. From memory (manager/attempts.py)."""
        return self._attempts.where(ids)

    def running_on(self, node: str) -> dict[str, int]:
        """The tasks running on a node, id -> attempt. From memory (manager/attempts.py)."""
        return self._attempts.running_on(node)

    def _where(self, condition: str, params: Iterable[object]) -> dict[str, Where]:
        """Where the tasks matching an SQL condition are, read without parsing whole records."""
        rows = self._query(
            "SELECT id, node, json_extract(record, '$.attempt'), state,"
            " json_extract(record, '$.draining.node'), json_extract(record, '$.draining.attempt')"
            f" FROM tasks WHERE {condition}",
            params,
        )
        return {
            str(i): Where(
                node,
                int(attempt),
                TaskState(state),
                DrainingAttempt(node=d_node, attempt=int(d_attempt)) if d_node else None,
            )
            for i, node, attempt, state, d_node, d_attempt in rows
        }

    def count(self, state: TaskState) -> int:
        """How many tasks are in the state (read from the index on state alone)."""
        rows = self._query("SELECT COUNT(*) FROM tasks WHERE state = ?", (state.value,))
        return int(rows[0][0])

    def tasks_named(self, name: str) -> list[TaskRecord]:
        """Tasks with this name (every task of a service bears the service's name)."""
        return self._tasks("WHERE name = ? ORDER BY created_at, id", (name,))

    def tasks_on(self, node: str, states: Iterable[TaskState]) -> list[TaskRecord]:
        """Tasks placed on a node that are in one of the given states."""
        wanted = [state.value for state in states]
        marks = ",".join("?" * len(wanted))
        return self._tasks(f"WHERE node = ? AND state IN ({marks}) ORDER BY id", [node, *wanted])

    def tasks_by_id(self, ids: Iterable[str]) -> dict[str, TaskRecord]:
        wanted = list(ids)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        return {task.id: task for task in self._tasks(f"WHERE id IN ({marks})", wanted)}

    def events(self, task_id: str) -> list[TaskEvent]:
        rows = self._query(
            "SELECT seq, record FROM task_events WHERE task_id = ? ORDER BY seq", (task_id,)
        )
        return self._parsed(TaskEvent, "task_events", "seq", rows)

    def service(self, name: str) -> ServiceRecord | None:
        rows = self._query("SELECT name, record FROM services WHERE name = ?", (name,))
        found = self._parsed(ServiceRecord, "services", "name", rows)
        return found[0] if found else None

    def services_page(self, after: str | None, limit: int) -> list[tuple[str, ServiceRecord]]:
        """Up to `limit` services by name, after the name `after`; each with its name."""
        rows = self._query(
            "SELECT name, record FROM services WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        )
        return [(s.name, s) for s in self._parsed(ServiceRecord, "services", "name", rows)]

    def services(self) -> list[ServiceRecord]:
        rows = self._query("SELECT name, record FROM services ORDER BY name")
        return self._parsed(ServiceRecord, "services", "name", rows)

    def peers(self, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """For each task name (a service's tasks share theirs), its placed tasks per node."""
        peers = self._holdings.peers
        if names is None:
            return {name: dict(counts) for name, counts in peers.items()}
        return {name: dict(peers[name]) for name in set(names) if name in peers}

    def address(self, name: str) -> str | None:
        """The address a node advertises (None: unknown, or it advertises none)."""
        node = self._nodes.get(name)
        return node.address if node is not None else None

    def node(self, name: str) -> NodeRecord | None:
        node = self._nodes.get(name)
        return self._with_holdings(node, {}) if node is not None else None

    def nodes(self) -> list[NodeRecord]:
        """Nodes by name, with what the tasks placed on them reserve."""
        at: dict[str, tuple[int, ...]] = {}  # each address's ports, summed once
        return [self._with_holdings(self._nodes[name], at) for name in sorted(self._nodes)]

    def _with_holdings(self, node: NodeRecord, at: dict[str, tuple[int, ...]]) -> NodeRecord:
        reserved = self._holdings.nodes.get(node.name, Reserved())
        return node.model_copy(
            update={
                "allocated_cpu": reserved.cpu,
                "allocated_memory": reserved.memory,
                "allocated_disk": reserved.disk,
                "task_count": reserved.tasks,
                "reserved_ports": self._ports_at(node, at),
            }
        )

    def _ports_at(self, node: NodeRecord, at: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
        """The host ports held at the node's address: by its tasks and leftover containers,
        and those of every node that advertises the same address (one host, one port
        space: two workers on one engine). A node with no address has its own. `at` keeps
        each address's answer, for a caller that asks about many nodes."""
        if node.address is None:
            return self._ports_of((node.name,))
        ports = at.get(node.address)
        if ports is None:
            ports = at[node.address] = self._ports_of(self._sharers(node.address))
        return ports

    def _ports_of(self, names: Iterable[str]) -> tuple[int, ...]:
        """The host ports the named nodes' tasks and leftover containers hold."""
        ports: set[int] = set()
        for name in names:
            reserved = self._holdings.nodes.get(name)
            if reserved is not None:
                ports.update(reserved.ports)
            ports.update(self._leftovers.held.get(name, ()))
        return tuple(sorted(ports))

    def _sharers(self, address: str) -> tuple[str, ...]:
        """The nodes that advertise the address."""
        if self._sharing is None:
            sharing: dict[str, list[str]] = {}
            for known in self._nodes.values():
                if known.address is not None:
                    sharing.setdefault(known.address, []).append(known.name)
            self._sharing = {where: tuple(names) for where, names in sharing.items()}
        return self._sharing.get(address, ())

    def close(self) -> None:
        """Commit what is open (its deliveries, unacked, come again and find it), and close."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
        finally:
            self._db.close()


def _delete(db: sqlite3.Connection, removed: Removal) -> None:
    """Delete what `kube rm` removes: tasks with their history, services, nodes."""
    tasks = [(task_id,) for task_id in removed.tasks]
    db.executemany("DELETE FROM tasks WHERE id = ?", tasks)
    db.executemany("DELETE FROM task_events WHERE task_id = ?", tasks)
    db.executemany("DELETE FROM services WHERE name = ?", [(n,) for n in removed.services])
    db.executemany("DELETE FROM nodes WHERE name = ?", [(n,) for n in removed.nodes])


KEYS = {"tasks": "id", "nodes": "name", "services": "name", "task_events": "seq"}
"""Each table of records, and the column that keys its rows."""


def _quarantine_malformed(db: sqlite3.Connection) -> None:
    """Move aside, before anything reads them with SQL's JSON functions, the rows whose
    record is not JSON at all (NaN, bytes that are not UTF-8, an edit gone wrong): one
    such row would otherwise fail every query over its table, and the manager's start."""
    db.execute("BEGIN IMMEDIATE")
    for table, column in KEYS.items():
        bad = db.execute(
            f"SELECT {column}, record FROM {table} WHERE CASE WHEN typeof(record) != 'text'"
            " THEN 1 WHEN json_valid(record) THEN 0 ELSE 1 END"
        ).fetchall()
        for key, record in bad:
            log.error("store: %s row %r is not JSON; moved to quarantine", table, key)
            db.execute(
                "INSERT INTO quarantine (source, key, record, reason) VALUES (?, ?, ?, ?)",
                (table, str(key), str(record), "the record is not JSON"),
            )
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
    db.execute("COMMIT")


def _add_ended_at(db: sqlite3.Connection) -> None:
    """Give a database made before ended tasks were purged its `ended_at` column, filled
    from the records, and the index the purge reads by."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(tasks)")}
    if "ended_at" not in columns:
        terminal = [state.value for state in TaskState if state.terminal]
        db.execute("BEGIN IMMEDIATE")  # the column and its values, or neither
        db.execute("ALTER TABLE tasks ADD COLUMN ended_at TEXT")
        rows = db.execute(
            "SELECT id, json_extract(record, '$.updated_at') FROM tasks"
            f" WHERE state IN ({','.join('?' * len(terminal))})",
            terminal,
        ).fetchall()
        db.executemany(  # written as record() writes it, so that the two sort together
            "UPDATE tasks SET ended_at = ? WHERE id = ?",
            [(datetime.fromisoformat(str(at)).isoformat(), i) for i, at in rows if at],
        )
        db.execute("COMMIT")
    db.execute("CREATE INDEX IF NOT EXISTS tasks_by_end ON tasks (state, ended_at)")


def _cluster_id(db: sqlite3.Connection) -> str:
    """The cluster's id: made once, with the database, and kept for its life. Workers
    label their containers with it (worker/runtime/base.py, CLUSTER_LABEL)."""
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('cluster_id', ?)", (uuid.uuid4().hex[:16],)
    )
    return str(db.execute("SELECT value FROM meta WHERE key = 'cluster_id'").fetchone()[0])


def read_cluster_id(path: Path) -> str | None:
    """The cluster id in a manager's database, read only; None if it has none yet."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'cluster_id'").fetchone()
    except sqlite3.Error:
        return None  # made by a kube from before cluster ids, not opened since
    finally:
        db.close()
    return str(row[0]) if row else None


def _put(nodes: dict[str, NodeRecord], name: str, node: NodeRecord | None) -> None:
    if node is None:
        nodes.pop(name, None)
    else:
        nodes[name] = node


def _hold(task: TaskRecord) -> Hold:
    assert task.node is not None
    spec = task.spec
    ports = tuple(sorted({*spec.fixed_host_ports(), *task.host_ports.values()}))
    return Hold(task.name, task.node, spec.cpu, spec.memory, spec.disk, ports)


_PORTS = "json_extract(record, '$.spec.ports'), json_extract(record, '$.host_ports')"
"""A task's published ports and the host ports it was given, read as JSON text beside
the columns of its claim."""


def _hold_of(row: Sequence[Any]) -> Hold:
    """A claim from (name, node, cpu, memory, disk, the spec's ports and the host ports
    given, as JSON): like `_hold`, without reading the whole record."""
    name, node, cpu, memory, disk, ports, given = row
    fixed = {p["host"] for p in json.loads(ports or "[]") if isinstance(p, dict) and p.get("host")}
    host = {int(port) for port in json.loads(given or "{}").values()}
    held = tuple(sorted(fixed | host))
    return Hold(str(name), str(node), float(cpu), int(memory), int(disk), held)
