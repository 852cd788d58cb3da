"""The manager process: consumes commands, queries and results; records, then publishes.

For each message: decode it, let `manager.core` decide and record the decision in SQLite
(with its outgoing messages in the outbox). The deliveries that arrived together share
one transaction: once they are handled (`finish_batch`) it commits, the outbox is
published with confirms, and only then are they acked. A manager killed anywhere in
between re-sends its outbox on start, and the broker redelivers the unacked messages,
which find their effects already recorded (a task id is never created twice) or, when
their transaction never committed, are handled afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from manager import admission, core, dead_dispatches, nodes, services
from manager.auth import WorkerAuth, result_sender_allowed
from manager.commands import Commands, new_task_id
from manager.effects import Decision
from manager.logs import Answer, LogRelay
from manager.metrics import observe
from manager.queries import Queries
from manager.scheduler import DEFAULT_SCHEDULER, make_scheduler
from manager.store import Store
from shared import topology
from shared.bus import Bus, Delivery
from shared.codec import decode, encode
from shared.confirms import Outbound
from shared.errors import DecodeError
from shared.messages import (
    Dispatch,
    Heartbeat,
    LogsReply,
    LogsRequest,
    Result,
    RunTask,
    StopTask,
    TaskUpdate,
)
from shared.models import NodeStatus, Reply, ServiceRecord, TaskRecord
from shared.settings import Settings
from shared.states import TaskState

log = logging.getLogger(__name__)

MANAGER_PREFETCH = 250
"""Unacked deliveries per queue: a batch is what arrived, acked after its outbox is confirmed."""

MAX_RESULT_LAG = 2.0
"""Seconds a result may wait in the queues before the manager counts itself behind: then
it marks no node down, since the heartbeats it has not read yet may be in the backlog."""

MAX_FOLLOW_UPS = 100
"""Service steps one message may trigger (a rolling update of 50 tasks takes ~100)."""

RESULT: TypeAdapter[TaskUpdate | Heartbeat | LogsReply] = TypeAdapter(Result)
DISPATCH: TypeAdapter[RunTask | StopTask | LogsRequest] = TypeAdapter(Dispatch)


@dataclass(frozen=True)
class ManagerConfig:
    """How the manager runs; built by the CLI from flags and the environment."""

    db_path: Path = Path(".kube/manager.db")
    scheduler: str = DEFAULT_SCHEDULER
    heartbeat_interval: float = 2.0
    node_down_after: float = 6.0  # about three missed heartbeats
    max_tasks_per_node: int | None = None  # no cap unless set
    max_nodes: int = admission.MAX_NODES


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
        self.bus = bus or Bus(settings, "kube-manager", prefetch=MANAGER_PREFETCH)
        self.store = Store(config.db_path)
        self.scheduler = make_scheduler(config.scheduler)
        self.clock = clock
        self.connected_at = clock()
        self.logs = LogRelay()
        self.queries = Queries(self.store, self.bus, self.logs, clock)
        self.commands = Commands(self)
        self.auth = WorkerAuth.from_env(settings.amqp_url)
        self._lag: tuple[float, datetime] = (0.0, self.connected_at)  # seconds, when seen
        self._acks: list[Delivery] = []
        self._replies: list[Outbound] = []
        self._heartbeat_parts: dict[str, list[Heartbeat]] = {}  # node -> parts so far

    def setup(self) -> None:
        """Declare the topology (known nodes' queues too) and start consuming."""
        self.bus.declare(topology.manager_topology())
        for node in self.store.nodes():
            self.bus.declare(topology.node_topology(node.name))
        self.bus.on_connect(self.on_connect)
        self.bus.after_events(self.finish_batch)
        self.bus.consume(topology.COMMANDS_QUEUE, self.from_asker(self.commands.on_command))
        self.bus.consume(topology.RESULTS_QUEUE, self.on_result)
        self.bus.consume(
            topology.QUERIES_QUEUE, self.from_asker(self.on_query), requeue_on_error=False
        )
        self.bus.consume(
            topology.DEAD_DISPATCHES_QUEUE, self.on_dead_letter, requeue_on_error=False
        )
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
        self._acks.clear()  # deliveries of the dead channel come again
        self._replies.clear()
        self.flush()

    # -- recording and publishing ------------------------------------------------------

    def commit(self, decision: Decision) -> None:
        """Record a decision; what it sends goes out with the batch (`finish_batch`)."""
        if decision.refused:
            log.warning("refused: %s", decision.refused)
        if not decision.empty:
            self.store.record(decision)
            observe(decision)
            for task in decision.tasks:
                log.info("task %s: %s on %s", task.id, task.state.value, task.node or "-")

    def settle(self, delivery: Delivery, reply: Reply | None = None) -> None:
        """A message's effect is recorded: answer and ack it once the batch is published."""
        if reply is not None and delivery.reply_to:
            self.relay(Answer(delivery.reply_to, delivery.correlation_id, reply))
        self._acks.append(delivery)

    def finish_batch(self) -> None:
        """After the deliveries that had arrived were handled: publish what their decisions
        send (the outbox, confirmed as one stream), then answer and ack them. Record, then
        publish, then ack, for a whole batch at a time.

        What handlers and timers record while this batch is published is the next batch,
        finished at once rather than after the connection's next wait for events.
        """
        while True:
            acks, replies = self._acks, self._replies
            self._acks, self._replies = [], []
            self.flush()
            self.bus.publish_batch(replies)
            self.bus.ack_batch(acks)
            if not (self._acks or self._replies or self.store.uncommitted):
                return

    def flush(self) -> None:
        """Commit what was recorded, then publish the outbox, oldest first; forget messages
        once the broker confirmed them.

        Publishing serves the connection, so handlers and timers may run meanwhile and
        record more: each round commits first, so nothing goes out uncommitted.
        """
        while True:
            self.store.commit()
            batch = self.store.outbox()
            if not batch:
                return
            self.bus.publish_batch(
                [self.bus.message(out.exchange, out.routing_key, out.body) for _, out in batch]
            )
            self.store.sent([seq for seq, _ in batch])

    def relay(self, answer: Answer) -> None:
        """Send an answer to a client's reply queue with the batch's other replies."""
        self._replies.append(
            self.bus.message(
                "",
                answer.reply_to,
                encode(answer.reply),
                correlation_id=answer.correlation_id,
                persistent=False,
            )
        )

    def refuse(self, delivery: Delivery, reason: str) -> None:
        """Answer a bad message with its reason and move it to the dead-letter queue."""
        log.warning("dead-lettering %s from %s: %s", delivery.routing_key, delivery.queue, reason)
        if topology.reply_refusal(delivery.reply_to) is None:  # never into another's queue
            self.bus.reply(delivery, encode(Reply(ok=False, error=reason)))
        self.bus.dead_letter(delivery, reason)

    def from_asker(self, handler: Callable[[Delivery], None]) -> Callable[[Delivery], None]:
        """A handler of requests that is never run for one whose reply_to names a queue
        that is not the asker's own: that request is dead-lettered with the reason."""

        def guarded(delivery: Delivery) -> None:
            refused = topology.reply_refusal(delivery.reply_to)
            if refused is None:
                handler(delivery)
                return
            log.warning("dead-lettering %s: %s", delivery.routing_key, refused)
            self.bus.dead_letter(delivery, refused)

        return guarded

    def on_query(self, delivery: Delivery) -> None:
        """Queries are answered at once: from committed state only, so commit first."""
        self.store.commit()
        self.queries.on_query(delivery)

    # -- results from workers ----------------------------------------------------------

    def on_result(self, delivery: Delivery) -> None:
        try:
            result = decode(RESULT, delivery.body)
        except DecodeError as exc:
            self.refuse(delivery, f"invalid result: {exc.reason}")
            return
        now = self.clock()
        refused = result_sender_allowed(
            delivery.user_id, result.node, self.auth
        ) or admission.dated_ahead(result.at, now)
        if refused is not None:
            self.refuse(delivery, refused)
            return
        self._lag = ((now - result.at).total_seconds(), now)
        if isinstance(result, Heartbeat) and self.store.node(result.node) is None:
            refused = admission.new_node(result, len(self.store.nodes()), self.config.max_nodes)
            if refused is not None:
                self.refuse(delivery, refused)
                return
        if isinstance(result, Heartbeat):
            self.heartbeat(result)
        elif isinstance(result, LogsReply):
            answer = self.logs.answer(result)
            if answer is not None:
                self.relay(answer)
        else:
            task = self.store.task(result.task_id)
            if task is None:
                self.refuse(delivery, f"update about unknown task {result.task_id!r}")
                return
            decision = core.apply_update(task, result, self.clock())
            self.commit(decision)
            self.after_change(decision)
        self.settle(delivery)

    def on_dead_letter(self, delivery: Delivery) -> None:
        """A dead letter: if it is a dispatch that never reached its worker, the attempt
        it was for ends failed with the reason (manager/dead_dispatches.py)."""
        dead = dead_dispatches.origin(delivery.headers)
        if dead.node is not None:
            try:
                message = decode(DISPATCH, delivery.body)
            except DecodeError:
                message = None  # not a dispatch kube sent: the dead-letter queue keeps it
            if isinstance(message, RunTask):
                task = self.store.task(message.task_id)
                decision = dead_dispatches.lost_dispatch(task, message, dead, self.clock())
                if not decision.empty:
                    log.warning("task %s: %s", message.task_id, decision.tasks[0].error)
                self.commit(decision)
                self.after_change(decision)
        self.settle(delivery)

    def heartbeat(self, beat: Heartbeat) -> None:
        """A heartbeat, or a part of one: part 0 says the node is alive; each part's
        containers are checked against their attempts; the whole list, once every part is
        in, against what the manager has running there."""
        known = self.store.node(beat.node)
        now = self.clock()
        decision = Decision()
        if beat.part == 0:
            if known is None:
                log.info("node %s: joined", beat.node)
                self.bus.declare(topology.node_topology(beat.node))
            decision.extend(nodes.apply_heartbeat(known, beat, now))
        decision.extend(
            nodes.superseded(beat, self.store.where(held.task_id for held in beat.tasks))
        )
        parts, whole = nodes.gather(self._heartbeat_parts.pop(beat.node, []), beat)
        if parts:
            self._heartbeat_parts[beat.node] = parts
        gone = nodes.missing(whole, self.store.running_on(beat.node)) if whole else []
        if gone:
            lost = list(self.store.tasks_by_id(gone).values())
            decision.extend(nodes.vanished(lost, beat.node, now))
        self.commit(decision)
        changed = beat.part == 0 and (
            known is None or known.status != NodeStatus.READY or known.engine_ok != beat.engine_ok
        )
        if changed or decision.tasks:
            self.schedule_pending()

    def after_change(self, decision: Decision) -> None:
        """Follow a change through: services whose tasks changed take their next step, and
        if capacity freed or a task awaits a new attempt, pending tasks are placed."""
        touched = {task.service for task in decision.tasks if task.service}
        for _ in range(MAX_FOLLOW_UPS):  # each step moves a service closer to its target
            if not touched:
                break
            name = touched.pop()
            service = self.store.service(name)
            if service is not None:
                step = self.reconcile_service(service, follow=False)
                touched |= {task.service for task in step.tasks if task.service}
        if any(task.state.terminal or task.state == TaskState.PENDING for task in decision.tasks):
            self.schedule_pending()

    def reconcile_service(self, service: ServiceRecord, follow: bool = True) -> Decision:
        """Save the service and take its next step (new tasks are placed at once)."""
        now = self.clock()
        tasks = [t for t in self.store.tasks_named(service.name) if t.service == service.name]
        decision = Decision(services=[service]).extend(
            services.reconcile(service, tasks, now, new_task_id)
        )
        fresh = [t for t in decision.tasks if t.state == TaskState.PENDING and t.attempt == 0]
        decision.extend(self.place(fresh, now))
        self.commit(decision)
        if follow:
            self.after_change(decision)
        return decision

    def place(self, tasks: Sequence[TaskRecord], now: datetime) -> Decision:
        """Schedule the given pending tasks onto the nodes as they are now."""
        return core.schedule(
            tasks,
            self.store.nodes(),
            self.scheduler,
            now,
            self.config.max_tasks_per_node,
            self.store.peers(task.name for task in tasks),
        )

    def schedule_pending(self) -> None:
        pending = self.store.tasks([TaskState.PENDING])
        if pending:
            self.commit(self.place(pending, self.clock()))

    def tick(self) -> None:
        """Every heartbeat interval: find silent nodes, and place tasks whose backoff ended."""
        now = self.clock()
        lag, seen = self._lag
        if lag > MAX_RESULT_LAG and (now - seen).total_seconds() < MAX_RESULT_LAG:
            # Still working through older results: a heartbeat not read yet proves nothing.
            log.info("results arrive %.1fs late: no node is judged silent now", lag)
            decision = Decision()
        else:
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
        for answer in self.logs.expire(now):
            self.relay(answer)

    def task(self, task_id: str) -> TaskRecord | None:
        return self.store.task(task_id)
