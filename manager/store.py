"""The manager's state in SQLite: tasks, their history, nodes and the outbox.

WAL mode, one transaction per batch of deliveries: the first decision recorded begins
it, each decision is written whole or not at all within it (a savepoint), and `commit`
ends it before anything it recorded is published or acked. A manager killed at any
moment restarts with the batches it committed, re-sends their outbox, and is sent again
every delivery of the batch it lost (none of them was acked).
A node's allocated resources are not stored: they are summed from the tasks placed on it
when the store opens, then moved with each decision it records (manager/holdings.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from manager.attempts import Attempts
from manager.effects import Decision, Outgoing
from manager.holdings import HOLDING, Hold, Holdings, Reserved
from manager.nodes import PLACED, Where
from shared.errors import StoreError
from shared.models import DrainingAttempt, NodeRecord, ServiceRecord, TaskEvent, TaskRecord
from shared.states import TaskState

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
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the manager database {self.path}: {exc}") from exc
        self._closed = False
        self._holdings = Holdings()
        for name, node, cpu, memory, disk in self._query(
            "SELECT name, node, cpu, memory, disk FROM tasks"
            f" WHERE state IN ({','.join('?' * len(HOLDING))}) AND node IS NOT NULL",
            [state.value for state in HOLDING],
        ):
            self._holdings.add(Hold(str(name), str(node), float(cpu), int(memory), int(disk)))
        self._attempts = Attempts()
        for task_id, where in self._where(
            f"state IN ({','.join('?' * len(PLACED))}) OR json_extract(record, '$.draining')"
            " IS NOT NULL",
            [state.value for state in PLACED],
        ).items():
            self._attempts.put(task_id, where)
        self._nodes = {
            node.name: node
            for node in (
                NodeRecord.model_validate_json(str(row[0]))
                for row in self._query("SELECT record FROM nodes")
            )
        }

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Writes that land whole or not at all, in the open transaction (begun if none is)."""
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
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

    def commit(self) -> None:
        """End the open transaction: what it recorded may now be published and acked."""
        if self._db.in_transaction:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

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
                "INSERT INTO tasks (id, name, state, node, cpu, memory, disk, created_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " node = excluded.node, record = excluded.record",
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
        for hold in before.values():
            self._holdings.remove(hold)
        for task in final.values():
            if task.state in HOLDING and task.node is not None:
                self._holdings.add(_hold(task))
            self._attempts.put(task.id, Where.of(task))
        for node in decision.nodes:
            self._nodes[node.name] = node

    def _holds(self, tasks: dict[str, TaskRecord]) -> dict[str, Hold]:
        """The claims the given tasks hold now, as recorded."""
        if not tasks:
            return {}
        marks = ",".join("?" * len(tasks))
        rows = self._query(
            f"SELECT id, name, node, cpu, memory, disk FROM tasks WHERE id IN ({marks})"
            f" AND state IN ({','.join('?' * len(HOLDING))}) AND node IS NOT NULL",
            [*tasks, *(state.value for state in HOLDING)],
        )
        return {
            str(i): Hold(str(name), str(node), float(cpu), int(memory), int(disk))
            for i, name, node, cpu, memory, disk in rows
        }

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

    def task(self, task_id: str) -> TaskRecord | None:
        rows = self._query("SELECT record FROM tasks WHERE id = ?", (task_id,))
        return TaskRecord.model_validate_json(str(rows[0][0])) if rows else None

    def tasks(self, states: Iterable[TaskState] | None = None) -> list[TaskRecord]:
        """Tasks, oldest first, optionally only those in the given states."""
        if states is None:
            rows = self._query("SELECT record FROM tasks ORDER BY created_at, id")
        else:
            wanted = [state.value for state in states]
            marks = ",".join("?" * len(wanted))
            rows = self._query(
                f"SELECT record FROM tasks WHERE state IN ({marks}) ORDER BY created_at, id",
                wanted,
            )
        return [TaskRecord.model_validate_json(str(row[0])) for row in rows]

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
        rows = self._query(
            "SELECT record FROM tasks WHERE name = ? ORDER BY created_at, id", (name,)
        )
        return [TaskRecord.model_validate_json(str(row[0])) for row in rows]

    def tasks_on(self, node: str, states: Iterable[TaskState]) -> list[TaskRecord]:
        """Tasks placed on a node that are in one of the given states."""
        wanted = [state.value for state in states]
        marks = ",".join("?" * len(wanted))
        rows = self._query(
            f"SELECT record FROM tasks WHERE node = ? AND state IN ({marks}) ORDER BY id",
            [node, *wanted],
        )
        return [TaskRecord.model_validate_json(str(row[0])) for row in rows]

    def tasks_by_id(self, ids: Iterable[str]) -> dict[str, TaskRecord]:
        wanted = list(ids)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._query(f"SELECT record FROM tasks WHERE id IN ({marks})", wanted)
        records = [TaskRecord.model_validate_json(str(row[0])) for row in rows]
        return {task.id: task for task in records}

    def events(self, task_id: str) -> list[TaskEvent]:
        rows = self._query(
            "SELECT record FROM task_events WHERE task_id = ? ORDER BY seq", (task_id,)
        )
        return [TaskEvent.model_validate_json(str(row[0])) for row in rows]

    def service(self, name: str) -> ServiceRecord | None:
        rows = self._query("SELECT record FROM services WHERE name = ?", (name,))
        return ServiceRecord.model_validate_json(str(rows[0][0])) if rows else None

    def services(self) -> list[ServiceRecord]:
        rows = self._query("SELECT record FROM services ORDER BY name")
        return [ServiceRecord.model_validate_json(str(row[0])) for row in rows]

    def peers(self, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """For each task name (a service's tasks share theirs), its placed tasks per node."""
        peers = self._holdings.peers
        if names is None:
            return {name: dict(counts) for name, counts in peers.items()}
        return {name: dict(peers[name]) for name in set(names) if name in peers}

    def node(self, name: str) -> NodeRecord | None:
        node = self._nodes.get(name)
        return self._with_holdings(node) if node is not None else None

    def nodes(self) -> list[NodeRecord]:
        """Nodes by name, with what the tasks placed on them reserve."""
        return [self._with_holdings(self._nodes[name]) for name in sorted(self._nodes)]

    def _with_holdings(self, node: NodeRecord) -> NodeRecord:
        reserved = self._holdings.nodes.get(node.name, Reserved())
        return node.model_copy(
            update={
                "allocated_cpu": reserved.cpu,
                "allocated_memory": reserved.memory,
                "allocated_disk": reserved.disk,
                "task_count": reserved.tasks,
            }
        )

    def close(self) -> None:
        """Commit what is open (its deliveries, unacked, come again and find it), and close."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
        finally:
            self._db.close()


def _hold(task: TaskRecord) -> Hold:
    assert task.node is not None
    return Hold(task.name, task.node, task.spec.cpu, task.spec.memory, task.spec.disk)
