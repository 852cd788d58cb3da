"""The manager process: consumes commands, queries and results; records, then publishes.

For each message: decode it, let `manager.core` decide and record the decision in the store
(with its outgoing messages in the outbox). The deliveries that arrived together share
one transaction: once they are handled (`finish_batch`) it commits, the outbox is
published with confirms, and only then are they acked. A manager killed anywhere in
between re-sends its outbox on start, and the broker redelivers the unacked messages,
which find their effects already recorded (a task id is never created twice) or, when
their transaction never committed, are handled afresh.

Each delivery is all or nothing within its batch (`handle`): its writes are a savepoint,
rolled back with what they moved in memory when its handler fails. A failure that is the
message's (it cannot be decoded, names what does not exist, or makes a handler raise) is
dead-lettered once, with its reason; one that is the broker's or the database's is tried
again. A batch the broker does not confirm (a nack, or a resource alarm that blocks
publishers) is published again with backoff, and no node is judged silent meanwhile; nor
before the manager has read every result sent before the silence it judges, heartbeats
included (a probe of its own results queue, manager/silence.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from pydantic import TypeAdapter

from manager import (
    admission,
    cluster,
    core,
    dead_dispatches,
    endpoints,
    jobs,
    kept_output,
    metrics,
    nodes,
    orphans,
    removal,
    secrets,
    services,
    silence,
)
from manager.auth import WorkerAuth, result_sender_allowed
from manager.blocked import Blocked
from manager.commands import Commands
from manager.config import ManagerConfig
from manager.effects import Decision, Outgoing
from manager.epochs import stamp
from manager.exec_relay import ExecRelay
from manager.holds import Holds, may_be_held
from manager.leadership import Identity, Lease
from manager.liveness import Liveness
from manager.lock_wait import Notices, Throttle
from manager.log_relay import Answer, LogRelay
from manager.metrics import count_orphans, observe
from manager.queries import Queries
from manager.quotas import Quotas
from manager.retention import PURGE_BATCH
from manager.scheduler import make_scheduler
from manager.secret_key import SecretKey
from manager.sessions import StreamRelay
from manager.store import Store
from shared import topology
from shared.bus import Bus, Delivery, MessageBus, Outbound
from shared.bus.connection import HEARTBEAT, LOST, silent_after
from shared.codec import decode, encode
from shared.errors import (
    ConnectionLost,
    DecodeError,
    Deposed,
    MessagingError,
    ResourceLocked,
    StoreError,
    StoreUnavailable,
    UnroutableError,
)
from shared.files import FilesRequest
from shared.ids import new_task_id
from shared.messages import (
    DISPATCH,
    ClockAhead,
    Disowned,
    Heartbeat,
    KeptOutput,
    LogsReply,
    Result,
    ResultMessage,
    ResultsProbe,
    RunTask,
)
from shared.models import (
    ManagerInfo,
    ManagerRole,
    NodeRecord,
    NodeStatus,
    Reply,
    ServiceRecord,
    SkipReason,
    TaskRecord,
)
from shared.sessions import StreamFrame
from shared.settings import Settings
from shared.specs import least_stop_after
from shared.states import TaskState

log = logging.getLogger(__name__)

MANAGER_PREFETCH = 250
"""Unacked deliveries per queue: a batch is what arrived, acked after its outbox is confirmed."""

MAX_PUBLISH_DELAY = 5.0
"""Seconds between tries, at most, while the broker does not confirm a batch (doubling
from half a second)."""

PROBE_KEY = "kube.manager.probe"
"""Routing key (on the default exchange, bound to no queue: the broker drops it) of the
message the manager publishes with each tick, so that the next tick knows the broker took
a publish since (its confirm came): only then is a node's silence the node's own. When
the manager publishes anyway it rides in that batch; when idle, it costs one small
publish a tick."""

TRANSIENT = (MessagingError, StoreError, *LOST)
"""Failures that are the broker's or the database's, not the message's: the delivery is
tried again (requeued, or redelivered after a reconnect), never dead-lettered for them."""

LOCK_RETRY = 0.25
"""Seconds between tries of a new leader to take the broker's lock queue."""

PROBE_TIMEOUT = 5.0
"""Seconds a starting manager tries the broker to learn who holds the lock: a broker
that does not answer by then is waited for later, as the manager connects."""

LEADER_EVENT = "manager.leader"
"""The event's routing key on kube.events, at each takeover (a ManagerInfo)."""

MAX_FOLLOW_UPS = 100
"""Service steps one message may trigger (a rolling update of 50 tasks takes ~100)."""

HOLDER: TypeAdapter[ManagerInfo] = TypeAdapter(ManagerInfo)
RESULT: TypeAdapter[ResultMessage] = TypeAdapter(Result)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Manager:
    """Wires the bus, the store, the scheduler and the pure core together."""

    def __init__(
        self,
        settings: Settings,
        config: ManagerConfig,
        bus: MessageBus | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        lease: Lease | None = None,
        identity: Identity | None = None,
    ) -> None:
        """With a lease (manager/leadership.py), the manager acts only while it holds it:
        every commit is fenced by its epoch, and every dispatch stamped with it."""
        self.config = config
        self.settings = settings
        # A frozen broker node (SIGSTOP, a hung VM) keeps the TCP connection and answers
        # nothing: with no confirm of the tick's probe for `silent_after`, the bus drops
        # the connection and goes on to the next broker, as a worker's does. Its heartbeat
        # is its lease: the broker drops a frozen manager's connection (its lock) as soon.
        self.bus: MessageBus = bus or Bus(
            settings,
            "kube-manager",
            prefetch=MANAGER_PREFETCH,
            silent_after=max(silent_after(config.heartbeat_interval), MANAGER_SILENT_AFTER),
            heartbeat=heartbeat_for(lease),
        )
        self.lease = lease
        self.identity = identity
        self.epoch = lease.epoch if lease is not None else 0
        fence = (identity.name, lease.epoch) if lease is not None and identity else None
        renew = (lease.length, lease.renewed) if lease is not None else None
        self.store = Store(config.store, fence=fence, renew=renew)
        self.scheduler = make_scheduler(config.scheduler)
        # Pending tasks that fit nowhere wait here for a change. A cache of the store: a
        # dropped unit that moved it resets it (`_blocked_moved`), and so does a tick that
        # finds it counts other pending tasks than the store does.
        # Held replacements, on the monotonic clock: kept across the index's rebuilds.
        self.holds = Holds(since=monotonic())
        self.blocked = Blocked(config.max_tasks_per_node, self.holds)
        self.clock = clock  # wall time, for records and people: never to measure an interval
        self.monotonic = monotonic  # what every interval is measured on (manager/liveness.py)
        self.liveness = Liveness(since=monotonic())
        self.logs = LogRelay()
        self.orphans = orphans.Book()  # the latest each node reported (manager/orphans.py)
        self.queries = Queries(
            self.store, self.bus, self.logs, monotonic, clock, self.orphans, self.epoch
        )
        self.streams = StreamRelay(
            self.store,
            self.bus,
            lambda message: self._replies.append(message),
            monotonic,
            clock,
            self.epoch,
        )
        self.quotas = Quotas(config.max_replicas, config.max_tasks_per_minute)
        self.secret_key = (
            SecretKey.load(config.secrets_key_file) if config.secrets_key_file else None
        )
        self.queries.secret_key = self.secret_key
        self.commands = Commands(self)
        self.auth = WorkerAuth.from_env(settings.amqp_url)
        self.execs = ExecRelay(self.streams, self.store, self.auth, self.commit, clock)
        self.queries.handlers.update(
            {
                topology.STREAM_OPEN_KEY: self.streams.open,
                topology.STREAM_INPUT_KEY: self.streams.input,
                topology.EXEC_OPEN_KEY: self.execs.open,
                topology.EXEC_INPUT_KEY: self.streams.input,
            }
        )
        self._acks: list[Delivery] = []
        self._replies: list[Outbound] = []
        self._heartbeat_parts: dict[str, list[Heartbeat]] = {}  # node -> parts so far
        self._newest_beats: dict[str, nodes.BeatMark] = {}  # node -> newest part heard
        self._came_back: dict[str, datetime] = {}  # node -> `at` of the heartbeat it returned with
        self.stop_budget = admission.StopBudget(window=config.heartbeat_interval)
        self.clock_notices = admission.Notices()
        self._doomed_queues: list[str] = []  # removed nodes' queues, deleted once committed
        self._undo: list[Callable[[], None]] = []  # undoes the open delivery's memory moves
        self._refusal: str | None = None  # why the open delivery is refused, if it is
        self._handling = False  # whether a delivery is being handled (`handle`)
        self.probes = silence.Probes()  # of the results queue, before judging silence
        self._last_tick = self.liveness.since  # monotonic, as is the next
        self._sent_at: float | None = None  # when the last confirmed publish began
        self._stalled = False  # a publish failed since the last that was confirmed
        self._retry_at = 0.0  # monotonic time before which no batch is published again
        self._retry_delay = 0.0
        self._probing = False  # a probe waits in the replies
        self.broker_seen = monotonic()  # when the broker was last known to be there

    def acting(self) -> bool:
        """Whether this manager may act: it holds its lease (if it runs with one) and no
        commit found it deposed."""
        if self.store.deposed:
            return False
        return self.lease is None or self.lease.valid(self.monotonic())

    def _must_act(self) -> None:
        """Raise Deposed unless this manager may act (before it publishes or acks)."""
        if not self.acting():
            why = self.lease.lost if self.lease is not None else None
            raise Deposed(f"manager no longer the leader: {why or 'its lease ran out'}")

    def setup(self, consume: bool = True) -> None:
        """Declare the topology (known nodes' queues too) and, unless not `consume`,
        start consuming (`consume_queues`)."""
        self.bus.declare(topology.manager_lock())  # first: a second manager stops here
        self.bus.declare(topology.manager_topology())
        for node in self.store.nodes():
            self.bus.declare(topology.node_topology(node.name))
        self.bus.on_connect(self.on_connect)
        self.bus.on_blocked(self.on_blocked)
        self.bus.after_events(self.finish_batch)
        self.bus.every(min(self.config.heartbeat_interval, 1.0), self.ticking)
        self.bus.every(self.config.purge_interval, self.purging)
        if consume:
            self.consume_queues()

    def consume_queues(self) -> None:
        """Consume the manager's queues (again after every reconnect)."""
        self.bus.consume(
            topology.COMMANDS_QUEUE, self.handling(self.from_asker(self.commands.on_command))
        )
        self.bus.consume(topology.RESULTS_QUEUE, self.handling(self.on_result))
        self.bus.consume(
            topology.QUERIES_QUEUE,
            self.handling(self.from_asker(self.on_query)),
            requeue_on_error=False,
        )
        self.bus.consume(
            topology.DEAD_DISPATCHES_QUEUE,
            self.handling(self.on_dead_letter, dead_letter=False),
            requeue_on_error=False,
        )

    def run(self, wait_for_lock: bool = False) -> None:
        """Serve until stopped, or until this manager no longer leads (then return, its
        open transaction rolled back). `wait_for_lock`: a new leader waits for the broker
        to grant the lock queue (the old leader's connection must go first).

        Consuming starts only once connected: the lock held, the outbox sent again (with
        this manager's epoch) and every node given a full interval (`on_connect`)."""
        self.setup(consume=False)
        log.info("manager: state in %s, scheduler %s", self.store.location, self.config.scheduler)
        try:
            if self.lease is not None:
                self.announce()  # sent with the outbox, once connected
            if wait_for_lock:
                self._take_lock()
            else:
                self.bus.connect()
            self.consume_queues()
            self.bus.run()
        except ResourceLocked as exc:
            raise ResourceLocked(
                f"another kube manager is running on this vhost{lock_holder(self.settings)}"
                f" (it holds the queue {topology.MANAGER_LOCK}); one manager per vhost: stop"
                " it first, or give this one a vhost of its own (several managers share a"
                " PostgreSQL store: docs/managers.md)"
            ) from exc
        except (Deposed, StoreUnavailable) as exc:
            log.error("manager: stopped acting: %s", exc)
        finally:
            acting = self.acting()
            try:
                self.bus.close()
            finally:
                self.store.close(commit=acting)

    def _take_lock(self) -> None:
        """Connect once the broker grants the lock queue; meanwhile keep the lease. pika's
        warning at each refused try is said once every 30 s; a wait longer than a lease
        names the holder (from its message), every 30 s."""
        started, notices = self.monotonic(), Notices()
        throttle = Throttle("RESOURCE_LOCKED")
        pika_channel = logging.getLogger("pika.channel")
        pika_channel.addFilter(throttle)
        log.info(
            "manager: waiting for the broker to grant %s (the previous leader's connection"
            " may still be open)",
            topology.MANAGER_LOCK,
        )
        try:
            while not self.bus.stopping:
                try:
                    self.bus.connect()
                    return
                except ResourceLocked:
                    self._must_act()
                    waited = self.monotonic() - started
                    if waited >= self._lease_length() and notices.due(self.monotonic()):
                        log.warning(
                            "manager: the broker has not granted %s for %.0fs: it is held by%s",
                            topology.MANAGER_LOCK,
                            waited,
                            lock_holder(self.settings) or " a connection that left no name",
                        )
                    self.broker_seen = self.monotonic()
                    time.sleep(LOCK_RETRY)
        finally:
            pika_channel.removeFilter(throttle)

    def broker_last_seen(self) -> float:
        """When the broker was last known to be there (monotonic): now while the bus holds
        a connection, whatever its thread is busy with (a long batch is not a lost
        broker); else the last time a tick or a (re)connect saw it."""
        return self.monotonic() if self.bus.connected else self.broker_seen

    def _lease_length(self) -> float:
        return self.lease.length if self.lease is not None else 0.0

    def _say_who_holds_the_lock(self) -> None:
        """Leave this manager's name where a manager refused the lock reads it."""
        if self.identity is None:
            return
        self._replies.append(
            self.bus.message("", topology.MANAGER_HOLDER, encode(self._info()), persistent=False)
        )

    def _info(self) -> ManagerInfo:
        assert self.identity is not None
        me = self.identity
        return ManagerInfo(
            name=me.name,
            host=me.host,
            pid=me.pid,
            role=ManagerRole.LEADER,
            epoch=self.epoch,
            since=self.clock(),
            seen_ago=0.0,
            cluster_id=self.store.cluster_id,
        )

    def announce(self) -> None:
        """Record the `manager.leader` event, sent with the outbox once connected."""
        info = self._info()
        self.store.record(
            Decision(outgoing=[Outgoing(topology.EVENTS, LEADER_EVENT, encode(info))])
        )
        self.store.commit()
        metrics.took_over(self.epoch)

    def on_connect(self) -> None:
        """After (re)connecting: count node silence from now, and send the outbox.

        While the manager had no broker it heard no heartbeat; that silence is not the
        nodes' fault, so they get a full interval again before being called down.
        """
        self.liveness.full_interval(self.monotonic())
        self.broker_seen = self.monotonic()
        self.probes.forget()
        self._acks.clear()  # deliveries of the dead channel come again
        self._replies.clear()
        self._say_who_holds_the_lock()
        self._probing = False
        self._retry_at = 0.0
        self.finish_batch()

    def on_blocked(self, blocked: bool) -> None:
        """The broker blocks publishers (a resource alarm), or unblocks them. Workers could
        not send heartbeats meanwhile: once unblocked, nodes get a full interval again."""
        if blocked:
            log.warning("manager: the broker blocks publishers; no node is judged silent")
        else:
            log.info("manager: the broker takes publishes again; nodes get a full interval")
            self.liveness.full_interval(self.monotonic())
            self._retry_at = 0.0

    # -- one delivery, all or nothing --------------------------------------------------

    def handling(
        self, handler: Callable[[Delivery], None], dead_letter: bool = True
    ) -> Callable[[Delivery], None]:
        """The handler, run as one unit per delivery (`handle`). Without dead_letter (for
        the queue that reads dead letters: a copy would come back to it), a message that
        fails is only logged and acked."""

        def handle(delivery: Delivery) -> None:
            self.handle(delivery, handler, dead_letter)

        return handle

    def handle(
        self, delivery: Delivery, handler: Callable[[Delivery], None], dead_letter: bool = True
    ) -> None:
        """Run a handler on one delivery, all or nothing: what it recorded (tables, caches,
        outbox, replies, acks) is kept if it succeeds, dropped if it is refused or raises.

        A refused delivery, or one whose handler raised for any reason that is not the
        broker's or the database's, is dead-lettered once with its reason; the other
        deliveries of the batch go on. A transient failure is raised, for the bus to
        requeue the delivery (or have it redelivered after reconnecting).
        """
        replies, acks = len(self._replies), len(self._acks)
        self._undo, self._refusal = [], None
        self.store.begin_unit()
        self._handling = True
        try:
            handler(delivery)
        except TRANSIENT:
            self._drop(replies, acks)
            if delivery.queue == topology.RESULTS_QUEUE:
                self.probes.overtaken()  # it is requeued: it may come after them
            raise
        except Exception as exc:  # noqa: BLE001 - the message's fault: dead-letter it
            self._drop(replies, acks)
            log.exception(
                "manager: handling %s from %s failed", delivery.routing_key, delivery.queue
            )
            reason = f"the manager failed on this message: {_describe(exc)}"
        else:
            self._handling = False
            if self._refusal is None:
                self.store.keep_unit()
                self._undo = []
                return
            self._drop(replies, acks)
            reason = self._refusal
        if dead_letter:
            self.dead_letter(delivery, reason)
        else:
            log.warning("dropping %s from %s: %s", delivery.routing_key, delivery.queue, reason)
            self._acks.append(delivery)

    def ticking(self) -> None:
        """The tick, all or nothing as a delivery is (`in_unit`)."""
        self.in_unit(self.tick)

    def purging(self) -> None:
        """The purge of ended tasks, all or nothing as a delivery is (`in_unit`)."""
        self.in_unit(self.purge_ended)

    def in_unit(self, fn: Callable[[], None]) -> None:
        """Run a timer's work as one unit: if it raises, it records nothing."""
        replies, acks = len(self._replies), len(self._acks)
        self._undo = []
        self.store.begin_unit()
        try:
            fn()
        except BaseException:
            self._drop(replies, acks)
            raise
        self.store.keep_unit()

    def _forget_queues(self, decision: Decision) -> None:
        """A removed node's queue goes once the removal is committed (`finish_batch`):
        otherwise every node ever removed would keep a durable queue on the broker."""
        for name in decision.removed.nodes:
            queue = topology.node_queue(name)
            self._doomed_queues.append(queue)
            self._undo.append(partial(self._doomed_queues.remove, queue))

    def _blocked_moved(self) -> None:
        """The open unit changes the blocked index: dropping the unit must rebuild it."""
        if self.blocked.reset not in self._undo:
            self._undo.append(self.blocked.reset)

    def _drop(self, replies: int, acks: int) -> None:
        """Undo the open delivery: its writes, its memory moves, its replies and acks."""
        self._handling = False
        try:
            self.store.drop_unit()
        finally:
            for step in reversed(self._undo):
                step()
            self._undo = []
            del self._replies[replies:]
            del self._acks[acks:]

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Answer a bad request with its reason, and move it to the dead-letter exchange
        with the reason in `x-kube-reason` (headers and body trimmed to fit), then ack it.

        Only requests are answered: their reply_to was checked (`from_asker`); a result
        or a dead letter is never answered."""
        log.warning("dead-lettering %s from %s: %s", delivery.routing_key, delivery.queue, reason)
        if delivery.queue in (topology.COMMANDS_QUEUE, topology.QUERIES_QUEUE):
            self.bus.reply(delivery, encode(Reply(ok=False, error=reason)))
        self.bus.dead_letter(delivery, reason)

    # -- recording and publishing ------------------------------------------------------

    def commit(self, decision: Decision) -> None:
        """Record a decision; what it sends goes out with the batch (`finish_batch`)."""
        if decision.refused:
            log.warning("refused: %s", decision.refused)
        if not decision.empty:
            self.store.record(decision)
            self.holds.follow(decision, self.monotonic())  # before the index reads them
            self._blocked_moved()
            self._forget_queues(decision)
            self.blocked.record(decision, self.store.node)
            observe(decision)
            for task in decision.tasks:
                log.info("task %s: %s on %s", task.id, task.state.value, task.node or "-")
            self.follow_endpoints(decision)

    def follow_endpoints(self, decision: Decision) -> None:
        """Record and announce the new endpoints of the services whose tasks the decision
        changed in a way that may change them (manager/endpoints.py)."""
        names = {task.service for task in decision.tasks if endpoints.may_change(task)}
        for name in sorted(n for n in names if n is not None):
            service = self.store.service(name)
            if service is None or not (service.spec.ports or service.endpoints):
                continue  # no port, no endpoint: nothing to read the tasks for
            tasks = [t for t in self.store.tasks_named(name) if t.service == name]
            changed = endpoints.follow(service, tasks, self.clock())
            if not changed.empty:
                log.info("service %s: endpoints %s", name, " ".join(changed.services[0].endpoints))
                self.store.record(changed)

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

        A batch the broker refuses or does not confirm in time is kept (committed, its
        outbox unsent, its deliveries unacked) and tried again with backoff; while the
        broker blocks publishers it is only committed.
        """
        while True:
            self._must_act()
            if self.bus.blocked or self.monotonic() < self._retry_at:
                self.store.commit()
                return
            acks, replies = self._acks, self._replies
            self._acks, self._replies = [], []
            started = self.monotonic()
            try:
                sent = self.flush()
                self.bus.publish_batch(replies)
            except ConnectionLost:
                raise  # the bus reconnects; on_connect sends the outbox again
            except MessagingError as exc:
                self._acks[:0], self._replies[:0] = acks, replies
                self._not_confirmed(exc)
                return
            self._confirmed(started if sent or replies else None)
            self._must_act()
            self.bus.ack_batch(acks)
            self._delete_doomed_queues()
            if not (self._acks or self._replies or self.store.uncommitted):
                return

    def _not_confirmed(self, exc: MessagingError) -> None:
        self._retry_delay = min(max(self._retry_delay * 2, 0.5), MAX_PUBLISH_DELAY)
        self._retry_at = self.monotonic() + self._retry_delay
        self._stalled = True
        log.warning(
            "manager: the broker did not take the batch (%s); trying again in %.1fs",
            exc,
            self._retry_delay,
        )

    def _confirmed(self, started: float | None) -> None:
        """The broker confirmed what was published from `started` on (None: nothing was)."""
        self._retry_delay = 0.0
        self._probing = False
        if started is not None:
            self._sent_at = started
        if self._stalled:
            # Workers' heartbeats may have been held up as ours were: a full interval again.
            log.info("manager: the broker confirms again; nodes get a full interval")
            self._stalled = False
            self.liveness.full_interval(self.monotonic())

    def _delete_doomed_queues(self) -> None:
        doomed, self._doomed_queues = self._doomed_queues, []
        for queue in doomed:
            try:
                self.bus.delete_queue(queue)
                log.info("deleted %s", queue)
            except MessagingError as exc:  # it stays; its node is gone all the same
                log.warning("could not delete %s: %s", queue, exc)

    def flush(self) -> int:
        """Commit what was recorded, then publish the outbox, oldest first; forget messages
        once the broker confirmed them. Returns how many were published.

        Publishing serves the connection, so handlers and timers may run meanwhile and
        record more: each round commits first, so nothing goes out uncommitted.
        """
        published = 0
        while True:
            self.store.commit()
            batch = self.store.outbox()
            if not batch:
                return published
            self._must_act()
            self.bus.publish_batch(
                [
                    self.bus.message(out.exchange, out.routing_key, self._stamped(out))
                    for _, out in batch
                ]
            )
            self.store.sent([seq for seq, _ in batch])
            published += len(batch)

    def _stamped(self, out: Outgoing) -> bytes:
        """A dispatch's body with this manager's epoch (manager/epochs.py)."""
        if self.epoch and out.exchange == topology.DISPATCH:
            return stamp(out.body, self.epoch)
        return out.body

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
        """Refuse a message: answered and dead-lettered with its reason. Within `handle`,
        once its handler returns, and after what the handler recorded was dropped."""
        if self._handling:
            self._refusal = reason
        else:
            self.dead_letter(delivery, reason)

    def from_asker(self, handler: Callable[[Delivery], None]) -> Callable[[Delivery], None]:
        """A handler of requests that is never run for one whose reply_to names a queue
        that is not the asker's own: that request is dead-lettered with the reason."""

        def guarded(delivery: Delivery) -> None:
            if delivery.queue == topology.COMMANDS_QUEUE and delivery.routing_key.startswith(
                topology.ANSWERED_KEYS
            ):
                self.settle(delivery)  # bound with "#": the queries queue answers it
                return
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
            result = decode(RESULT, delivery.body, unique_keys=False)  # see shared.codec.decode
        except DecodeError as exc:
            self.refuse(delivery, f"invalid result: {exc.reason}")
            return
        if isinstance(result, ResultsProbe):
            self.probe_read(delivery, result)
            return
        now = self.clock()
        refused = result_sender_allowed(delivery.user_id, result.node, self.auth)
        if refused is not None:
            self.refuse(delivery, refused)
            return
        ahead = admission.seconds_ahead(result.at, now)
        if ahead is not None:
            self.clock_ahead(delivery, result.node, ahead)
            return
        if isinstance(result, Heartbeat):
            known = self.store.node(result.node)
            if known is None:
                nodes_now = len(self.store.nodes())
                refused = admission.new_node(result, nodes_now, self.config.max_nodes)
                if refused is not None:
                    self.refuse(delivery, refused)
                    return
            self.heartbeat(result, known, redelivered=delivery.redelivered)
        elif isinstance(result, StreamFrame):
            self.streams.frame(result, delivery.body)
        elif isinstance(result, LogsReply):
            answer = self.logs.answer(result)
            if answer is not None:
                self.relay(answer)
        elif isinstance(result, KeptOutput):
            kept = kept_output.accept(self.store.task(result.task_id), result)
            if isinstance(kept, str):
                self.refuse(delivery, kept)
                return
            if kept is not None:
                self.store.keep_output(kept)
        elif isinstance(result, FilesRequest):
            self.send_files(result)
        else:
            task = self.store.task(result.task_id)
            if task is None:
                self.refuse(delivery, f"update about unknown task {result.task_id!r}")
                return
            address = self.store.address(result.node) if result.host_ports else None
            decision = core.apply_update(task, result, self.clock(), address)
            self.commit(decision)
            self.after_change(decision)
        self.settle(delivery)

    def send_files(self, request: FilesRequest) -> None:
        """An attempt's secrets and configs, sealed for the worker's key, on its node's
        queue: not persistent, and dropped by the broker unread after FILES_TTL."""
        reply = secrets.files_reply(
            self.secret_key, self.store.task(request.task_id), request, self.store.file
        )
        if reply.error is not None:
            attempt = (reply.task_id, reply.attempt)
            log.warning("task %s: attempt %d: no files sent: %s", *attempt, reply.error)
        try:
            self.bus.publish(
                topology.DISPATCH,
                request.node,
                stamp(encode(reply), self.epoch),
                persistent=False,
                mandatory=True,
                expiration=secrets.FILES_TTL,
            )
        except UnroutableError:
            log.warning("task %s: node %s has no dispatch queue", request.task_id, request.node)

    def probe_read(self, delivery: Delivery, probe: ResultsProbe) -> None:
        """A probe came back through the results queue (manager/silence.py). One this
        manager did not make (a forgery: workers may write to kube.results; or a former
        leader's) is acked and ignored: it proves nothing and costs nothing, and it is not
        dead-lettered, which would let anyone fill kube.dead-letters."""
        if not self.probes.read_back(probe.id):
            log.debug("ignoring a probe this manager did not make (from %s)", delivery.user_id)
        self.settle(delivery)

    def clock_ahead(self, delivery: Delivery, node: str, ahead: float) -> None:
        """A result of `node` dated `ahead` seconds too far ahead: dropped, not
        dead-lettered (a worker sends a heartbeat a second, and kube.dead-letters would
        grow without bound); the worker is told why, and it is logged, once a minute."""
        if self.clock_notices.due(node, self.monotonic()):
            log.warning("node %s: refusing its results: %s", node, admission.ahead_reason(ahead))
            told = ClockAhead(ahead=round(ahead, 1), limit=admission.MAX_AHEAD.total_seconds())
            self.commit(Decision(outgoing=[Outgoing(topology.DISPATCH, node, encode(told))]))
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

    def heartbeat(
        self, beat: Heartbeat, known: NodeRecord | None, redelivered: bool = False
    ) -> None:
        """A heartbeat, or a part of one, from a node as the manager knows it (None: new):
        part 0 says the node is alive; each part's containers are checked against their
        attempts; the whole list, once every part is in, against what runs there.

        A redelivered heartbeat proves nothing about what is gone: a manager killed
        before its ack may have committed a later report of the same node already (a
        task's `running`, from the same queue), which the new leader reads from the store;
        the stale list lacks that task. The node's next heartbeat checks it."""
        now, ticks = self.clock(), self.monotonic()
        decision = Decision()
        if beat.part == 0:
            if known is None:
                log.info("node %s: joined", beat.node)
                self.bus.declare(topology.node_topology(beat.node))
            decision.extend(nodes.apply_heartbeat(known, beat, now))
            decision.extend(cluster.introduce(beat, self.store.cluster_id))
            self._undo.append(self.liveness.hear(beat.node, ticks))
            if known is not None and known.status == NodeStatus.DOWN:
                self._came_back[beat.node] = beat.at  # its parts come with this `at`
            else:
                self._came_back.pop(beat.node, None)
        came_back = now if self._came_back.get(beat.node) == beat.at else None
        allowed = self.stop_budget.left(beat.node, ticks)  # never more than a part may cause
        where = self.store.where([*(h.task_id for h in beat.tasks), *self._orphan_ids(beat)])
        # The tasks whose containers it lists that hold nothing counted (superseded, ended,
        # unknown): few, read once for their latest attempts and their host ports.
        ids = nodes.uncounted(beat, where)
        uncounted = self.store.tasks_by_id(ids) if ids else {}
        latest = {i: task.attempt for i, task in uncounted.items() if i not in where}
        stops_itself = {i for i, t in uncounted.items() if t.spec.on_disconnect is not None}
        stops = nodes.superseded(beat, where, latest, allowed, came_back, stops_itself)
        self.stop_budget.spend(beat.node, len(stops.outgoing), ticks)
        decision.extend(stops)
        decision.extend(self.note_orphans(beat, where, latest))
        whole: Heartbeat | None = None
        newest = self._newest_beats.get(beat.node)
        if nodes.newer(beat, newest):  # a copy of an older one proves nothing missing
            self._newest_beats[beat.node] = (beat.at, beat.part)
            self._undo.append(lambda: self._put_newest(beat.node, newest))
            held = self._heartbeat_parts.pop(beat.node, None)
            self._undo.append(lambda: self._put_parts(beat.node, held))
            parts, whole = nodes.gather(held or [], beat)
            if parts:
                self._heartbeat_parts[beat.node] = parts
        freed = self.note_leftovers(beat, uncounted.values(), whole is not None)
        running_here = self.store.running_on(beat.node)
        gone = (
            nodes.missing(whole, running_here, self._adopted_here(beat.node))
            if whole is not None and not redelivered
            else []
        )
        if gone:
            lost = list(self.store.tasks_by_id(gone).values())
            decision.extend(nodes.vanished(lost, beat.node, now))
        self.commit(decision)
        changed = beat.part == 0 and (
            known is None or known.status != NodeStatus.READY or known.engine_ok != beat.engine_ok
        )
        if changed or decision.tasks or freed:
            self.schedule_pending()

    def _orphan_ids(self, beat: Heartbeat) -> list[str]:
        return [o.task_id for o in beat.orphans]

    def note_orphans(
        self, beat: Heartbeat, where: Mapping[str, nodes.Where], latest: Mapping[str, int]
    ) -> Decision:
        """Containers this manager never placed are left running: the worker is told to
        list them as orphans (`Disowned`); the orphans part 0 lists are kept for people
        (`kube ps --orphans`), and those adopted here are told again (manager/orphans.py)."""
        decision = Decision()
        stray = orphans.strays(beat, where, latest)
        if stray:
            log.warning(
                "node %s: %d containers of tasks this manager never placed (%s...): left"
                " running and reported as orphans",
                beat.node,
                len(stray),
                stray[0].task_id,
            )
            told = Disowned(tasks=tuple(stray))
            decision.outgoing.append(Outgoing(topology.DISPATCH, beat.node, encode(told)))
        if beat.part == 0 and beat.inventory:  # else its worker has not looked yet
            maybe = [o.task_id for o in beat.orphans if orphans.maybe_ours(o, beat.node, where)]
            records = self.store.tasks_by_id(maybe) if maybe else {}
            containers = {i: task.container_id for i, task in records.items()}
            found = self.orphans.heard(beat, where, containers)
            count_orphans(beat.node, found.count)
            decision.extend(orphans.readopt(beat, where, containers))
        return decision

    def _adopted_here(self, node: str) -> set[tuple[str, int]]:
        """Adopted attempts a restarted worker lists as orphans until it is told again:
        held all the same, not vanished."""
        return self.orphans.adopted.get(node, set())

    def note_leftovers(self, beat: Heartbeat, found: Iterable[TaskRecord], whole: bool) -> bool:
        """Count the host ports of the containers the heartbeat part lists that the holdings
        do not (`found`: a superseded or lost attempt being stopped, a draining one; and
        the orphans) as held on the node until a heartbeat shows them gone; whether that
        freed a port."""
        ports = [port for task in found for port in task.spec.fixed_host_ports()]
        if beat.part == 0:  # the orphans it lists hold theirs too (manager/orphans.py)
            ports += orphans.held_ports(
                self.orphans.nodes.get(beat.node, orphans.NodeOrphans(beat.node))
            )
        freed = self.store.heard_leftovers(beat.node, ports, beat.part == 0, whole)
        if freed:
            self.blocked.reset()  # a port freed outside any decision: look again
        return freed

    def _put_newest(self, node: str, mark: nodes.BeatMark | None) -> None:
        """Put back the newest heartbeat part heard from a node before a dropped delivery."""
        if mark is None:
            self._newest_beats.pop(node, None)
        else:
            self._newest_beats[node] = mark

    def _put_parts(self, node: str, parts: list[Heartbeat] | None) -> None:
        """Put back the heartbeat parts held for a node before a dropped delivery."""
        if parts:
            self._heartbeat_parts[node] = parts
        else:
            self._heartbeat_parts.pop(node, None)

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
        ticks = self.monotonic()
        decision = core.schedule(
            tasks,
            self.store.nodes(),
            self.scheduler,
            now,
            self.config.max_tasks_per_node,
            self.store.peers(task.name for task in tasks),
            self.store.cluster_id,
            self.holds.until,
            ticks,
            self.store.volume_holders(v.name for task in tasks for v in task.spec.volumes),
        )
        self._blocked_moved()
        self.blocked.settle(tasks, decision, now, ticks)
        return decision

    def volume_forgotten(self) -> None:
        """A volume was forgotten (`kube volume rm`): the tasks that waited for its node
        may go anywhere now, so every blocked task is looked at again."""
        self.blocked.reset()
        self.schedule_pending()

    def schedule_pending(self) -> None:
        """Place the pending tasks that are due: new, woken by a change, or out of backoff."""
        if self.blocked.stale:
            pending = self.store.tasks([TaskState.PENDING])
            if not self.holds.armed:
                self.holds.rearm(self.held_at_start(pending))
            self.blocked.rebuild(pending, self.store.nodes())
        now = self.clock()
        due = self.store.tasks_by_id(self.blocked.due(now, ticks=self.monotonic())).values()
        pending = sorted(
            (task for task in due if task.state == TaskState.PENDING),
            key=lambda task: (task.created_at, task.id),
        )
        if pending:
            self.commit(self.place(pending, now))

    def held_at_start(self, pending: Iterable[TaskRecord]) -> dict[str, float]:
        """The full hold of each pending task that may have been waiting out one when this
        manager started: it cannot know how much of it passed (manager/holds.py)."""
        least = least_stop_after(self.config.heartbeat_interval)
        return {
            task.id: nodes.hold_back(task, 0.0, least)
            for task in pending
            if task.spec.on_disconnect is not None and may_be_held(task, self.store.events(task.id))
        }

    def tick(self) -> None:
        """Every heartbeat interval: find silent nodes, and place tasks whose backoff ended."""
        now, ticks = self.clock(), self.monotonic()
        self.broker_seen = ticks  # timers fire only while connected
        known = self.store.nodes()
        silent = self.liveness.silent((node.name for node in known), ticks)
        decision = nodes.mark_down(known, silent, self.config.node_down_after)
        if decision.nodes:
            read = self.silence_read(known, [node.name for node in decision.nodes], ticks)
            decision = nodes.mark_down(known, read, self.config.node_down_after)
        self._last_tick = ticks
        for node in list(decision.nodes):
            log.warning(
                "node %s: down (not heard for %.1fs, last heartbeat at %s)",
                node.name,
                silent[node.name],
                node.last_heartbeat,
            )
            placed = self.store.tasks_on(node.name, nodes.PLACED)
            least = least_stop_after(self.config.heartbeat_interval)
            decision.extend(nodes.node_lost(node.name, placed, now, silent[node.name], least))
        self.commit(decision)
        if self.blocked.pending != self.store.count(TaskState.PENDING):
            self.blocked.reset()  # it missed a change (a rollback nobody reported): rebuild
        self.schedule_pending()
        self.fire_jobs(now)
        for answer in self.logs.expire(ticks):
            self.relay(answer)
        self.streams.tick()
        if not self._probing:  # one at a time: none piles up while the broker blocks
            self._probing = True
            self._replies.append(self.bus.message("", PROBE_KEY, b"{}", persistent=False))

    def fire_jobs(self, now: datetime) -> None:
        """Decide the ticks of the jobs that are due (manager/jobs.py): each job's runs and
        its advanced last tick are recorded together, in this batch's transaction."""
        for job in self.store.jobs():
            if job.next_tick is not None and job.next_tick > now:
                continue
            decision = jobs.fire(job, self.store.runs(job.name), now)
            moved = decision.jobs[-1] if decision.jobs else None
            skip = moved.last_skip if moved is not None else None
            if moved is not None and skip is not None and skip != job.last_skip:
                log.info(
                    "job %s: %d ticks skipped (%s), the newest at %s",
                    job.name,
                    moved.missed - job.missed if skip.reason == SkipReason.MISSED else skip.count,
                    skip.reason.value,
                    skip.tick.isoformat(),
                )
            for task in decision.tasks:
                if task.job == job.name and task.state == TaskState.PENDING:
                    log.info("job %s: run %s started", job.name, task.id)
            self.start_runs(decision)

    def start_runs(self, decision: Decision) -> None:
        """Record a job's decision, placing the runs it starts at once."""
        now = self.clock()
        fresh = [t for t in decision.tasks if t.state == TaskState.PENDING and t.attempt == 0]
        decision.extend(self.place(fresh, now))
        self.commit(decision)
        self.after_change(decision)

    def purge_ended(self) -> None:
        """Forget ended tasks past the retention (manager/retention.py), a batch a pass."""
        ended, oldest = self.store.ended(PURGE_BATCH)
        doomed = self.config.retention.purgeable(oldest, ended, self.clock())
        if doomed:
            log.info("purging %d ended tasks (%d have ended)", len(doomed), ended)
        decision = Decision()
        for task in doomed:
            decision.extend(removal.remove_task(task))
        self.commit(decision)

    def may_judge_silence(self) -> bool:
        """Whether a node not heard from may be called down now, judged by the manager
        alone (never by a worker's clock): the broker takes the manager's publishes, so it
        takes the workers' heartbeats too."""
        if self.bus.blocked:
            log.info("the broker blocks publishers: no node is judged silent now")
            return False
        if self._sent_at is None or self._sent_at < self._last_tick:
            log.info("no publish was confirmed since the last tick: no node is judged silent")
            return False
        return True

    def silence_read(
        self, known: Sequence[NodeRecord], suspects: Sequence[str], ticks: float
    ) -> dict[str, float]:
        """How long each node had not been heard when the newest probe read back was made:
        every result sent before then was read, so that silence is the node's own ({}
        while the broker is not known to take publishes, or no probe came back). A probe
        is sent when a suspect is not silent for long enough by that measure, and one is
        due (manager/silence.py)."""
        if not self.may_judge_silence():
            return {}
        names = [node.name for node in known]
        up_to = self.probes.read_up_to
        read = {} if up_to is None else self.liveness.silent(names, up_to)
        unproven = [n for n in suspects if read.get(n, 0.0) <= self.config.node_down_after]
        if unproven and self.probes.due(ticks):
            self.probe(unproven, ticks)
        return read

    def probe(self, suspects: Sequence[str], ticks: float) -> None:
        """Publish a probe to the manager's own results queue, with this batch."""
        if self.probes.out:
            newest = self.probes.out[-1]
            log.info(
                "probe %s of the results queue not read back after %.1fs (lost, or behind"
                " a backlog): probing again",
                newest.id,
                ticks - newest.made,
            )
        probe = self.probes.make(ticks, silence.new_probe_id())
        self._undo.append(partial(self.probes.unmake, probe))
        log.info(
            "node %s%s: not heard for over %gs; judged once the results sent before now are"
            " read (probe %s of the results queue)",
            suspects[0],
            f" and {len(suspects) - 1} more" if len(suspects) > 1 else "",
            self.config.node_down_after,
            probe.id,
        )
        body = encode(ResultsProbe(id=probe.id, at=self.clock()))
        self._replies.append(
            self.bus.message(topology.RESULTS, topology.RESULTS_PROBE_KEY, body, persistent=False)
        )


def lock_holder(settings: Settings) -> str:
    """Who holds the manager's lock, as its holder left it (" (manager NAME, pid P on
    HOST)"), or nothing if that cannot be read."""
    probe = Bus(settings, "kube-manager-probe")
    try:
        probe.connect()
        body = probe.peek(topology.MANAGER_HOLDER)
        if body is None:
            return ""
        info = decode(HOLDER, body)
    except (MessagingError, DecodeError, *LOST) as exc:
        log.info("manager: cannot read who holds the lock: %s", exc)
        return ""
    finally:
        probe.close()
    return f" (manager {info.name}, pid {info.pid} on {info.host}, epoch {info.epoch})"


MIN_MANAGER_HEARTBEAT = 15
"""Seconds: the broker drops a connection that sent nothing for about two heartbeats, and
pika sends them only between the manager's handlers. A batch of a 600-replica service
kept the bus thread 11 s on a loaded machine; with a 5 s heartbeat the broker dropped the
connection in the middle of it, the batch was redelivered, and it never ended."""

MANAGER_SILENT_AFTER = 20.0
"""Seconds without a confirm before the manager presumes its broker dead (at least; see
`silent_after`): a large batch's confirms took more than 5 s on a loaded broker."""


def heartbeat_for(lease: Lease | None) -> int:
    """The AMQP heartbeat a manager asks for: three leases, at least MIN_MANAGER_HEARTBEAT,
    so that the broker drops a frozen leader's connection, and its lock, within about
    30 s (with the usual 30 s, a SIGSTOPped leader kept the lock ~75 s)."""
    if lease is None:
        return HEARTBEAT
    return max(MIN_MANAGER_HEARTBEAT, math.ceil(3 * lease.length))


def lock_taken_by(settings: Settings) -> tuple[bool, ManagerInfo | None]:
    """Whether another connection holds the manager's lock now, and who it said it is
    (None: it left no readable message). A free lock is held for a moment by this probe;
    a new leader taking it then waits LOCK_RETRY more."""
    probe = Bus(settings, "kube-manager-probe")
    probe.declare(topology.manager_lock())
    give_up = threading.Timer(PROBE_TIMEOUT, probe.stop)  # the broker may not answer yet
    give_up.start()
    try:
        probe.connect()
    except ResourceLocked:
        pass
    else:
        return False, None
    finally:
        give_up.cancel()
        probe.close()
    reader = Bus(settings, "kube-manager-probe")
    try:
        reader.connect()
        body = reader.peek(topology.MANAGER_HOLDER)
        return True, None if body is None else decode(HOLDER, body)
    except (MessagingError, DecodeError, *LOST) as exc:
        log.info("manager: cannot read who holds the lock: %s", exc)
        return True, None
    finally:
        reader.close()


def check_cluster(settings: Settings, cluster_id: str | None) -> None:
    """Refuse to start when the manager holding the vhost's lock runs another cluster
    (another store): it would wait for a lock it must never get, and take it, and the
    workers, from that cluster when its leader dies."""
    try:
        held, info = lock_taken_by(settings)
    except (MessagingError, *LOST) as exc:
        log.info("manager: cannot tell who holds the lock: %s", exc)
        return
    if not held or info is None or info.cluster_id is None or info.cluster_id == cluster_id:
        return
    raise ResourceLocked(
        f"another kube cluster runs on this vhost: manager {info.name} (pid {info.pid} on"
        f" {info.host}, epoch {info.epoch}) leads cluster {info.cluster_id}, whose store is"
        f" not this one (cluster {cluster_id or 'new'}); give this manager that store, or a"
        " vhost of its own"
    )


def _describe(exc: BaseException) -> str:
    """An exception as one line for a dead-letter reason."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
