"""The manager process: consumes commands, queries and results; records, then publishes.

For each message: decode it, let `manager.core` decide, record the decision in SQLite in
one transaction (with its outgoing messages in the outbox), publish the outbox with
confirms, and only then ack. A manager killed anywhere in between re-sends its outbox
on start, and the broker redelivers the unacked message, which finds its effect already
recorded (a task id is never created twice).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from manager import core, nodes
from manager.effects import Decision
from manager.metrics import observe
from manager.queries import Queries
from manager.scheduler import DEFAULT_SCHEDULER, make_scheduler
from manager.store import Store
from shared import topology
from shared.bus import Bus, Delivery
from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.messages import Heartbeat, Result, TaskUpdate
from shared.models import ID_PATTERN, NodeStatus, Reply, StopRequest, TaskRecord, TaskSpec
from shared.settings import Settings
from shared.states import TaskState

log = logging.getLogger(__name__)

SPEC = TypeAdapter(TaskSpec)
STOP = TypeAdapter(StopRequest)
RESULT: TypeAdapter[TaskUpdate | Heartbeat] = TypeAdapter(Result)


@dataclass(frozen=True)
class ManagerConfig:
    """How the manager runs; built by the CLI from flags and the environment."""

    db_path: Path = Path(".kube/manager.db")
    scheduler: str = DEFAULT_SCHEDULER
    heartbeat_interval: float = 2.0
    node_down_after: float = 6.0  # about three missed heartbeats


def utcnow() -> datetime:
    return datetime.now(UTC)


class Manager:
    """Wires the bus, the store, the scheduler and the pure core together."""

    def __init__(
        self,
        settings: Settings,
        config: ManagerConfig,
        bus: Bus | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.bus = bus or Bus(settings, "kube-manager")
        self.store = Store(config.db_path)
        self.scheduler = make_scheduler(config.scheduler)
        self.clock = clock
        self.connected_at = clock()
        self.queries = Queries(self.store, self.bus)

    def setup(self) -> None:
        """Declare the topology (known nodes' queues too) and start consuming."""
        self.bus.declare(topology.manager_topology())
        for node in self.store.nodes():
            self.bus.declare(topology.node_topology(node.name))
        self.bus.on_connect(self.on_connect)
        self.bus.consume(topology.COMMANDS_QUEUE, self.on_command)
        self.bus.consume(topology.RESULTS_QUEUE, self.on_result)
        self.bus.consume(topology.QUERIES_QUEUE, self.queries.on_query, requeue_on_error=False)
        self.bus.every(min(self.config.heartbeat_interval, 1.0), self.tick)

    def run(self) -> None:
        self.setup()
        log.info("manager: state in %s, scheduler %s", self.config.db_path, self.config.scheduler)
        try:
            self.bus.run()
        finally:
            self.store.close()

    def on_connect(self) -> None:
        """After (re)connecting: count node silence from now, and send the outbox.

        While the manager had no broker it heard no heartbeat; that silence is not the
        nodes' fault, so they get a full interval again before being called down.
        """
        self.connected_at = self.clock()
        self.flush()

    # -- recording and publishing ------------------------------------------------------

    def commit(self, decision: Decision) -> None:
        """Record a decision, then publish what it sends."""
        if decision.refused:
            log.warning("refused: %s", decision.refused)
        if not decision.empty:
            self.store.record(decision)
            observe(decision)
            for task in decision.tasks:
                log.info("task %s: %s on %s", task.id, task.state.value, task.node or "-")
        self.flush()

    def flush(self) -> None:
        """Publish the outbox, oldest first; forget each message once confirmed."""
        while batch := self.store.outbox():
            for seq, out in batch:
                self.bus.publish(out.exchange, out.routing_key, out.body)
                self.store.sent([seq])

    def refuse(self, delivery: Delivery, reason: str) -> None:
        """Answer a bad message with its reason and move it to the dead-letter queue."""
        log.warning("dead-lettering %s from %s: %s", delivery.routing_key, delivery.queue, reason)
        self.bus.reply(delivery, encode(Reply(ok=False, error=reason)))
        self.bus.dead_letter(delivery, reason)

    # -- commands ----------------------------------------------------------------------

    def on_command(self, delivery: Delivery) -> None:
        if delivery.routing_key == topology.SUBMIT_KEY:
            self.submit(delivery)
        elif delivery.routing_key == topology.STOP_KEY:
            self.stop(delivery)
        else:
            self.refuse(
                delivery,
                f"unknown routing key {delivery.routing_key!r}: use"
                f" {topology.SUBMIT_KEY} or {topology.STOP_KEY}",
            )

    def submit(self, delivery: Delivery) -> None:
        try:
            spec = decode(SPEC, delivery.body)
        except DecodeError as exc:
            self.refuse(delivery, f"invalid task spec: {exc.reason}")
            return
        task_id = spec.id or _message_id(delivery) or uuid.uuid4().hex[:16]
        existing = self.store.task(task_id)
        if existing is None:
            now = self.clock()
            decision = core.accept(spec, task_id, now)
            decision.extend(
                core.schedule(decision.tasks[-1:], self.store.nodes(), self.scheduler, now)
            )
            self.commit(decision)
        else:
            log.info("task %s: submitted again; already %s", task_id, existing.state.value)
            self.flush()
        self.bus.reply(delivery, encode(Reply(ok=True, id=task_id)))
        self.bus.ack(delivery)

    def stop(self, delivery: Delivery) -> None:
        try:
            request = decode(STOP, delivery.body)
        except DecodeError as exc:
            self.refuse(delivery, f"invalid stop request: {exc.reason}")
            return
        task = self.store.task(request.id)
        if task is None:
            self.refuse(delivery, f"unknown task {request.id!r}")
            return
        decision = core.request_stop(task, self.clock())
        self.commit(decision)
        self.after_change(decision)
        self.bus.reply(delivery, encode(Reply(ok=True, id=task.id)))
        self.bus.ack(delivery)

    # -- results from workers ----------------------------------------------------------

    def on_result(self, delivery: Delivery) -> None:
        try:
            result = decode(RESULT, delivery.body)
        except DecodeError as exc:
            self.refuse(delivery, f"invalid result: {exc.reason}")
            return
        if isinstance(result, Heartbeat):
            self.heartbeat(result)
        else:
            task = self.store.task(result.task_id)
            if task is None:
                self.refuse(delivery, f"update about unknown task {result.task_id!r}")
                return
            decision = core.apply_update(task, result, self.clock())
            self.commit(decision)
            self.after_change(decision)
        self.bus.ack(delivery)

    def heartbeat(self, beat: Heartbeat) -> None:
        known = self.store.node(beat.node)
        if known is None:
            log.info("node %s: joined", beat.node)
            self.bus.declare(topology.node_topology(beat.node))
        now = self.clock()
        decision = nodes.apply_heartbeat(known, beat, now)
        held = self.store.tasks_by_id(held.task_id for held in beat.tasks)
        placed = self.store.tasks_on(beat.node, nodes.PLACED)
        decision.extend(nodes.reconcile(beat, held, placed, now))
        self.commit(decision)
        changed = (
            known is None or known.status != NodeStatus.READY or known.engine_ok != beat.engine_ok
        )
        if changed or decision.tasks:
            self.schedule_pending()

    def after_change(self, decision: Decision) -> None:
        """Capacity may have freed, or a task awaits a new attempt: place pending tasks."""
        if any(task.state.terminal or task.state == TaskState.PENDING for task in decision.tasks):
            self.schedule_pending()

    def schedule_pending(self) -> None:
        pending = self.store.tasks([TaskState.PENDING])
        if pending:
            now = self.clock()
            self.commit(core.schedule(pending, self.store.nodes(), self.scheduler, now))

    def tick(self) -> None:
        """Every heartbeat interval: find silent nodes, and place tasks whose backoff ended."""
        now = self.clock()
        decision = nodes.mark_down(
            self.store.nodes(), now, self.config.node_down_after, self.connected_at
        )
        for node in list(decision.nodes):
            log.warning("node %s: down (no heartbeat since %s)", node.name, node.last_heartbeat)
            decision.extend(
                nodes.node_lost(node.name, self.store.tasks_on(node.name, nodes.PLACED), now)
            )
        self.commit(decision)
        self.schedule_pending()

    def task(self, task_id: str) -> TaskRecord | None:
        return self.store.task(task_id)


def _message_id(delivery: Delivery) -> str | None:
    """An AMQP message_id usable as a task id: it makes a raw publish idempotent too."""
    if delivery.message_id and re.match(ID_PATTERN, delivery.message_id):
        return delivery.message_id
    return None
