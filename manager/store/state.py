"""The manager's state: tasks, their history, nodes, services and the outbox.

On SQLite or PostgreSQL (manager/store/base.py). One transaction per batch of
deliveries: the first decision recorded begins it, each decision is written whole or not
at all within it (a savepoint), and `commit` ends it before anything it recorded is
published or acked. Each delivery is a unit of its own within the batch (`begin_unit`,
then `keep_unit` or `drop_unit`): a savepoint that is rolled back, with what it moved in
memory, when its handler fails, so one bad delivery never takes the rest of its batch
with it. A manager killed at any moment restarts with the batches it committed, re-sends
their outbox, and is sent again every delivery of the batch it lost (none was acked).
A node's allocated resources are not stored: they are summed from the tasks placed on it
when the store opens, then moved with each decision it records (manager/holdings.py).
Those caches always mirror the open transaction: a unit dropped undoes its moves, and a
transaction that fails to commit is rolled back and the caches are read again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from manager.attempts import Attempts
from manager.effects import Decision, Outgoing, Removal
from manager.holdings import HOLDING, Hold, Holdings, Leftovers, Reserved
from manager.nodes import PLACED, Where
from manager.store import files, kept
from manager.store.base import Database
from manager.store.files import StoredFile
from manager.store.lease import Leases, Role
from manager.store.schema import KEYS, upgrade
from manager.store.url import connect
from shared.errors import Deposed, StoreError, StoreUnavailable
from shared.files import FileKind, FileRecord
from shared.kept import KEEP_ATTEMPTS, KeptLogs
from shared.models import (
    DrainingAttempt,
    JobRecord,
    ManagerInfo,
    NodeRecord,
    ServiceRecord,
    TaskEvent,
    TaskRecord,
)
from shared.states import TaskState
from shared.volumes import VolumeRecord

DEFAULT_LEASE = 5.0
"""Seconds of a lease when the store was opened without one (manager/leadership.py)."""

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Named = TypeVar("Named", ServiceRecord, JobRecord)

MAX_READ_RECORDS = 100_000
"""Records kept parsed, by their row's key and text: a service's every task is read on each
change of one of them, and parsing 600 records per result made a result cost 100 ms
(models are frozen, so one parsed record can be handed out again while its row is the same
text). Emptied when full: a store of more rows only parses more."""


class Store:
    """The manager's state; one connection, used from the manager's bus thread only."""

    def __init__(
        self,
        target: str | Path,
        fence: tuple[str, int] | None = None,
        renew: tuple[float, Callable[[float], None]] | None = None,
    ) -> None:
        """Open the database a store URL (or a SQLite file's path) names, upgrading its
        schema if an older kube wrote it (manager/store/schema.py). With a fence (the
        lease's holder and epoch: manager/store/lease.py), every commit first checks, in
        its transaction, that the lease is still at that epoch."""
        self._fence = fence
        # SQLite: (the lease's length, what to tell of a renewal's monotonic start)
        self._renew = renew
        self.deposed = False  # a commit found the lease at another epoch
        self._db: Database = connect(target)
        try:
            upgrade(self._db)
            _quarantine_malformed(self._db)
            self.cluster_id = _cluster_id(self._db)
        except BaseException:
            self._db.close()
            raise
        self.location = self._db.where  # for messages and logs
        self._closed = False
        self._unit: list[Callable[[], None]] | None = None  # undo steps of the open unit
        self._unit_begun = False  # whether the open unit has written (its savepoint exists)
        self._holdings = Holdings()
        self._leftovers = Leftovers()
        self._attempts = Attempts()
        self._nodes: dict[str, NodeRecord] = {}
        self._sharing: dict[str, tuple[str, ...]] | None = None  # address -> its nodes
        self._read: dict[tuple[str, str], tuple[str, Any]] = {}  # see _parsed
        self._load_caches()
        self.commit()  # what was quarantined while loading

    def _load_caches(self) -> None:
        """Read the in-memory mirrors (holdings, attempts, nodes) from the tables."""
        self._holdings = Holdings()
        for row in self._query(
            "SELECT name, node, cpu, memory, disk, host_ports FROM tasks"
            f" WHERE state IN ({','.join('?' * len(HOLDING))}) AND node IS NOT NULL",
            [state.value for state in HOLDING],
        ):
            self._holdings.add(_hold_of(row))
        self._attempts = Attempts()
        for task_id, where in self._where(
            f"state IN ({','.join('?' * len(PLACED))}) OR draining_node IS NOT NULL",
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
    def _transaction(self) -> Iterator[Database]:
        """Writes that land whole or not at all, in the open transaction (begun if none is)."""
        db = self._db
        savepoint = False
        try:
            with db.batch():  # PostgreSQL: one round trip for all of it
                if not db.in_transaction:
                    db.begin()
                if self._unit is not None and not self._unit_begun:
                    db.execute("SAVEPOINT unit")
                    self._unit_begun = True
                db.execute("SAVEPOINT write")
                savepoint = True
                yield db
                db.execute("RELEASE write")
        except BaseException:
            if savepoint:
                db.execute("ROLLBACK TO write")
                db.execute("RELEASE write")
            raise

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
                self._db.execute("RELEASE unit")
        finally:
            self._unit, self._unit_begun = None, False

    def drop_unit(self) -> None:
        """The unit's handler failed: roll back its writes, and undo what they moved in
        memory, newest first. The batch's other units are untouched."""
        undo, begun = self._unit or [], self._unit_begun
        self._unit, self._unit_begun = None, False
        if begun:
            self._db.execute("ROLLBACK TO unit")
            self._db.execute("RELEASE unit")
        for step in reversed(undo):
            step()

    def commit(self) -> None:
        """End the open transaction: what it recorded may now be published and acked.

        If the commit fails, the transaction is rolled back and the in-memory caches are
        read again from what is committed: the batch's deliveries, unacked, come again.
        """
        if self._unit_begun:
            raise StoreError("cannot commit while a unit is open")
        if self._db.in_transaction:
            try:
                self._check_fence()
                self._db.commit()
            except StoreError:
                self._abandon()
                raise

    def _check_fence(self) -> None:
        """Refuse to commit if another manager took the lease since this one did. On
        PostgreSQL the row stays locked (FOR SHARE) until the commit: a takeover waits for
        it, so no commit of a deposed manager lands after the epoch moved on."""
        if self._fence is None:
            return
        if self._renew is not None and self._db.kind == "sqlite":
            # The batch holds the file's one write lock, which the lease's own connection
            # would wait for: each commit renews the lease itself, in its transaction.
            length, renewed = self._renew
            started = time.monotonic()
            kept = self._db.query(
                f"UPDATE leader SET expires = {self._db.now} + ?"
                " WHERE id = 1 AND holder = ? AND epoch = ? RETURNING epoch",
                (length, *self._fence),
            )
            if kept:
                renewed(started)
                return
        rows = self._db.query(f"SELECT holder, epoch FROM leader WHERE id = 1{self._db.share}")
        found = (str(rows[0][0]), int(rows[0][1])) if rows else ("", 0)
        if found != self._fence:
            self.deposed = True
            raise Deposed(
                f"manager {self._fence[0]} (epoch {self._fence[1]}) is no longer the leader:"
                f" {found[0] or 'no one'} holds the lease at epoch {found[1]}; its batch is"
                " rolled back"
            )

    def _abandon(self) -> None:
        """Roll back the open transaction and read the caches again from the tables (not
        when deposed or disconnected: the manager stops, and reads nothing more)."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except StoreError as exc:  # a failed COMMIT may have rolled back already
            log.warning("store: rolling back after a failed commit: %s", exc)
            if isinstance(exc, StoreUnavailable):
                return
        if not self.deposed:
            self._load_caches()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        return self._db.query(sql, tuple(params))

    # -- writes ------------------------------------------------------------------------

    def record(self, decision: Decision) -> None:
        """Write a decision's tasks, history, nodes and outbox, whole, in the open transaction."""
        final = {task.id: task for task in decision.tasks}  # the last word on each task
        before = self._holds(final)
        with self._transaction() as db:
            db.executemany(
                f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " node = excluded.node, record = excluded.record, ended_at = excluded.ended_at,"
                " attempt = excluded.attempt, draining_node = excluded.draining_node,"
                " draining_attempt = excluded.draining_attempt,"
                " unplaced_kind = excluded.unplaced_kind, not_before = excluded.not_before,"
                " host_ports = excluded.host_ports",
                [_row(task) for task in final.values()],
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
            if decision.jobs:
                db.executemany(
                    "INSERT INTO jobs (name, record) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                    [(job.name, job.model_dump_json()) for job in decision.jobs],
                )
            if decision.volumes:
                db.executemany(
                    "INSERT INTO volumes (name, node, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    [(v.name, v.node, v.created_at.isoformat()) for v in decision.volumes],
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
            "SELECT id, name, node, cpu, memory, disk, host_ports FROM tasks"
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
        records: list[M] = []
        for key, text in rows:
            text = str(text)
            known = self._read.get((table, str(key)))
            if known is not None and known[0] == text:
                records.append(known[1])  # read before, unchanged since: parsed once
                continue
            try:
                record = model.model_validate_json(text)
            except ValidationError as exc:
                self._quarantine(table, column, str(key), str(text), str(exc))
                continue
            named = getattr(record, column, key)
            if named != key:  # the row's key is what queries and caches go by
                reason = f"the record names {column} {named!r}, its row {key!r}"
                self._quarantine(table, column, str(key), str(text), reason)
                continue
            if len(self._read) >= MAX_READ_RECORDS:
                self._read.clear()
            self._read[(table, str(key))] = (text, record)
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
            "SELECT id, node, attempt, state, draining_node, draining_attempt"
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

    def keep_output(self, logs: KeptLogs, keep: int = KEEP_ATTEMPTS) -> None:
        """Keep the end of an ended attempt's output, in the open transaction; only the
        task's newest `keep` attempts stay (manager/store/kept.py)."""
        with self._transaction() as db:
            kept.put(db, logs, keep)

    def kept_output(self, task_id: str, attempt: int | None = None) -> KeptLogs | None:
        """The kept output of an attempt of a task (None: its newest kept attempt)."""
        return kept.get(self._db, task_id, attempt)

    def kept_exit_codes(self, task_id: str) -> dict[int, int | None]:
        """The attempts of a task whose output is kept, with their exit codes if known."""
        return kept.exit_codes(self._db, task_id)

    def service(self, name: str) -> ServiceRecord | None:
        return self._named(ServiceRecord, "services", name)

    def _named(self, model: type[Named], table: str, name: str) -> Named | None:
        """The record of a table keyed by name, if there is one by that name."""
        rows = self._query(f"SELECT name, record FROM {table} WHERE name = ?", (name,))
        found = self._parsed(model, table, "name", rows)
        return found[0] if found else None

    def services_page(self, after: str | None, limit: int) -> list[tuple[str, ServiceRecord]]:
        """Up to `limit` services by name, after the name `after`; each with its name."""
        return self._named_page(ServiceRecord, "services", after, limit)

    def _named_page(
        self, model: type[Named], table: str, after: str | None, limit: int
    ) -> list[tuple[str, Named]]:
        """Up to `limit` records of a table keyed by name, after the name `after`."""
        rows = self._query(
            f"SELECT name, record FROM {table} WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        )
        return [(r.name, r) for r in self._parsed(model, table, "name", rows)]

    def services(self) -> list[ServiceRecord]:
        rows = self._query("SELECT name, record FROM services ORDER BY name")
        return self._parsed(ServiceRecord, "services", "name", rows)

    def job(self, name: str) -> JobRecord | None:
        return self._named(JobRecord, "jobs", name)

    def jobs_page(self, after: str | None, limit: int) -> list[tuple[str, JobRecord]]:
        """Up to `limit` jobs by name, after the name `after`; each with its name."""
        return self._named_page(JobRecord, "jobs", after, limit)

    def jobs(self) -> list[JobRecord]:
        """The scheduled jobs, by name."""
        rows = self._query("SELECT name, record FROM jobs ORDER BY name")
        return self._parsed(JobRecord, "jobs", "name", rows)

    def runs(self, job: str) -> list[TaskRecord]:
        """The runs of a job that the store still has, oldest first."""
        return [t for t in self.tasks_named(job) if t.job == job]

    # -- secrets and configs (manager/secrets.py): every version, encrypted -------------

    def put_file(self, stored: StoredFile) -> None:
        with self._transaction() as db:
            files.put(db, stored)

    def file(self, kind: FileKind, name: str, version: int | None = None) -> StoredFile | None:
        return files.newest(self._db, kind, name, version)

    def files(self, kind: FileKind) -> list[FileRecord]:
        return files.listing(self._db, kind)

    def remove_file(self, kind: FileKind, name: str) -> None:
        with self._transaction() as db:
            files.remove(db, kind, name)

    def peers(self, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """For each task name (a service's tasks share theirs), its placed tasks per node."""
        peers = self._holdings.peers
        if names is None:
            return {name: dict(counts) for name, counts in peers.items()}
        return {name: dict(peers[name]) for name in set(names) if name in peers}

    def volume_holders(self, names: Iterable[str]) -> dict[str, str]:
        """The node holding each of the named volumes that is known (docs/volumes.md)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._query(f"SELECT name, node FROM volumes WHERE name IN ({marks})", wanted)
        return {name: node for name, node in rows}

    def volumes(self) -> list[VolumeRecord]:
        """Every known volume by name, each with the tasks not ended that name it."""
        rows = self._query("SELECT name, node, created_at FROM volumes ORDER BY name")
        if not rows:
            return []
        users: dict[str, list[str]] = {}
        for task in self.tasks(state for state in TaskState if not state.terminal):
            for volume in task.spec.volumes:
                users.setdefault(volume.name, []).append(task.id)
        return [
            VolumeRecord(
                name=name,
                node=node,
                created_at=datetime.fromisoformat(created),
                used_by=tuple(users.get(name, ())),
            )
            for name, node, created in rows
        ]

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

    def managers(self) -> list[ManagerInfo]:
        """The managers seen, by name, with the leader's epoch and since when it leads."""
        leases = Leases(self._db)
        holder = leases.holder()
        since = datetime.fromtimestamp(holder.since, UTC) if holder.since else None
        gone_after = 2 * (self._renew[0] if self._renew is not None else DEFAULT_LEASE)
        return [
            ManagerInfo(
                name=seen.name,
                host=seen.host,
                pid=seen.pid,
                role=Role.LEADER
                if leader
                else Role.GONE
                if seen.ago > gone_after
                else Role.STANDBY,
                epoch=holder.epoch if leader else 0,
                since=since if leader else None,
                seen_ago=max(seen.ago, 0.0),
            )
            for seen in leases.managers()
            for leader in [seen.name == holder.name and holder.left > 0]
        ]

    def close(self, commit: bool = True) -> None:
        """Commit what is open (its deliveries, unacked, come again and find it), and
        close; without `commit` (a manager that no longer leads), roll it back."""
        if self._closed:
            return
        self._closed = True
        try:
            if commit:
                self.commit()
            elif self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except StoreUnavailable as exc:
            log.warning("store: closing: %s", exc)
        finally:
            self._db.close()


def _delete(db: Database, removed: Removal) -> None:
    """Delete what `kube rm` removes: tasks with their history, services, nodes."""
    tasks = [(task_id,) for task_id in removed.tasks]
    db.executemany("DELETE FROM tasks WHERE id = ?", tasks)
    db.executemany("DELETE FROM task_events WHERE task_id = ?", tasks)
    kept.delete(db, tasks)
    db.executemany("DELETE FROM services WHERE name = ?", [(n,) for n in removed.services])
    db.executemany("DELETE FROM nodes WHERE name = ?", [(n,) for n in removed.nodes])
    db.executemany("DELETE FROM jobs WHERE name = ?", [(n,) for n in removed.jobs])
    db.executemany("DELETE FROM volumes WHERE name = ?", [(n,) for n in removed.volumes])


def _quarantine_malformed(db: Database) -> None:
    """Move aside the rows whose record is not JSON at all (NaN, bytes that are not UTF-8,
    an edit gone wrong), before anything reads them: one such row would otherwise fail
    every read of its table, and the manager's start. Done at every start, as a row may
    be spoiled by hand at any time; PostgreSQL's json columns never hold such a row."""
    found = [(t, c, key, text) for t, c in KEYS.items() for key, text in db.malformed(t, c)]
    if not found:
        return
    db.begin()
    for table, column, key, text in found:
        log.error("store: %s row %r is not JSON; moved to quarantine", table, key)
        db.execute(
            "INSERT INTO quarantine (source, key, record, reason) VALUES (?, ?, ?, ?)",
            (table, key, text, "the record is not JSON"),
        )
        db.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
    db.commit()


TASK_COLUMNS = (
    "id", "name", "state", "node", "cpu", "memory", "disk", "created_at", "record", "ended_at",
    "attempt", "draining_node", "draining_attempt", "unplaced_kind", "not_before", "host_ports",
)  # fmt: skip
"""A task's row: its record, and what queries select and sort it by (manager/store/schema.py)."""


def _row(task: TaskRecord) -> tuple[object, ...]:
    """A task's row, in TASK_COLUMNS' order."""
    draining, unplaced, not_before = task.draining, task.unplaced, task.not_before
    return (
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
        task.attempt,
        draining.node if draining is not None else None,
        draining.attempt if draining is not None else None,
        unplaced.kind.value if unplaced is not None else None,
        not_before.isoformat() if not_before is not None else None,
        ",".join(str(port) for port in _held_ports(task)) or None,
    )


def _cluster_id(db: Database) -> str:
    """The cluster's id: made once, with the database, and kept for its life. Workers
    label their containers with it (worker/runtime/base.py, CLUSTER_LABEL)."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('cluster_id', ?) ON CONFLICT (key) DO NOTHING",
        (uuid.uuid4().hex[:16],),
    )
    return str(db.query("SELECT value FROM meta WHERE key = 'cluster_id'")[0][0])


def read_cluster_id(target: str | Path) -> str | None:
    """The cluster id in a manager's database (a store URL or a SQLite file), read only;
    None if it has none yet, or cannot be read."""
    try:
        db = connect(target, readonly=True)
    except StoreError:
        return None
    try:
        rows = db.query("SELECT value FROM meta WHERE key = 'cluster_id'")
    except StoreError:
        return None  # made by a kube from before cluster ids, not opened since
    finally:
        db.close()
    return str(rows[0][0]) if rows else None


def _put(nodes: dict[str, NodeRecord], name: str, node: NodeRecord | None) -> None:
    if node is None:
        nodes.pop(name, None)
    else:
        nodes[name] = node


def _hold(task: TaskRecord) -> Hold:
    assert task.node is not None
    spec = task.spec
    return Hold(task.name, task.node, spec.cpu, spec.memory, spec.disk, _held_ports(task))


def _held_ports(task: TaskRecord) -> tuple[int, ...]:
    """The host ports a task holds on its node: the fixed ones it asks for, and those the
    engine gave its current attempt."""
    return tuple(sorted({*task.spec.fixed_host_ports(), *task.host_ports.values()}))


def _hold_of(row: Sequence[Any]) -> Hold:
    """A claim from (name, node, cpu, memory, disk, host_ports: the ports it holds)."""
    name, node, cpu, memory, disk, ports = row
    fixed = tuple(int(port) for port in ports.split(",")) if ports else ()
    return Hold(str(name), str(node), float(cpu), int(memory), int(disk), fixed)
