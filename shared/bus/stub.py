"""`StubBus`: an in-memory, deterministic stand-in for `Bus`, for tests and dry runs.

Like Dramatiq's StubBroker, it has no broker and no thread of its own: it records what
is published, acked, rejected and dead-lettered, in order, and the test drives it:
`deliver` hands a message to a queue's consumer, `run_callbacks` runs what other threads
passed to `call_threadsafe`, `fire_timers` and `process_events` run timers and the
`after_events` hooks, `connect`/`reconnect` the `on_connect` hooks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.bus.consume import Consumer, handle
from shared.bus.message import Delivery, Handler, Outbound, dead_letter_copy
from shared.bus.protocol import MessageBus
from shared.bus.timers import Timer, fire
from shared.errors import MessagingError, ResourceLocked
from shared.topology import Topology

log = logging.getLogger("shared.bus")


@dataclass(frozen=True)
class Published:
    """A message the stub took, as the broker would have confirmed it."""

    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    persistent: bool = True
    mandatory: bool = False
    user_id: str | None = None
    expiration: float | None = None


class StubBus:
    """Records publishes, acks, rejects and dead letters; delivers when told to."""

    def __init__(self, user: str = "guest", name: str = "stub-bus") -> None:
        self._user = user
        self._name = name
        self.topologies: list[Topology] = []  # all declared
        self._again: list[Topology] = []  # declared again after each reconnect
        self.consumers: dict[str, Consumer] = {}
        self.timers: list[Timer] = []
        self._on_connect: list[Callable[[], None]] = []
        self._after_events: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: list[Callable[[], None]] = []
        self._stopping = False
        self._next_tag = 1
        self._settled: set[int] = set()
        self.generation = 1
        self.connected = False
        # what happened, in order: ("publish", Published), ("ack", Delivery),
        # ("reject", Delivery); the lists below hold the same by kind
        self.log: list[tuple[str, Any]] = []
        self.published: list[Published] = []
        self.acked: list[Delivery] = []
        self.rejected: list[tuple[Delivery, bool]] = []  # with requeue
        self.dead_letters: list[tuple[Delivery, str]] = []  # with the reason
        self.deleted: list[str] = []  # queues deleted
        self.consumer_counts: dict[str, int] = {}  # consumers of other processes, by queue
        self.locked: set[str] = set()  # exclusive queues other connections hold
        self.checks: list[Callable[[Published], None]] = []  # run on every publish first
        # run (once) while the next batch's confirms are awaited, as a real bus serves
        # handlers and callbacks meanwhile
        self.while_confirming: list[Callable[[], None]] = []
        self.fail_next: MessagingError | None = None  # raised by the next publish instead
        self.blocked = False  # as the broker's connection.blocked sets it; see block()
        self.connected = True  # a stand-in broker is always there
        self._on_blocked: list[Callable[[bool], None]] = []
        self.depths: dict[str, int] = {}  # what queue_depth reports, per queue (else 0)

    # -- set-up

    def declare(self, topology: Topology, again: bool = True) -> None:
        """Record it; refuse an exclusive queue another connection holds, as the broker."""
        self.topologies.append(topology)
        if again:
            self._again.append(topology)
        self._refuse_locked(topology)

    def on_blocked(self, fn: Callable[[bool], None]) -> None:
        self._on_blocked.append(fn)

    def block(self, blocked: bool) -> None:
        """Act as the broker blocking (a resource alarm) or unblocking publishers."""
        self.blocked = blocked
        for fn in self._on_blocked:
            fn(blocked)

    def queue_depth(self, queue: str) -> int:
        return self.depths.get(queue, 0)

    def peek(self, queue: str) -> bytes | None:
        """The last message published to the queue by name (the default exchange)."""
        sent = [p.body for p in self.published if p.exchange == "" and p.routing_key == queue]
        return sent[-1] if sent else None

    def consumers_of(self, queue: str) -> int:
        return self.consumer_counts.get(queue, 0)

    def delete_queue(self, queue: str) -> None:
        self.deleted.append(queue)
        self.log.append(("delete", queue))

    def consume(self, queue: str, handler: Handler, requeue_on_error: bool = True) -> None:
        self.consumers[queue] = Consumer(queue, handler, requeue_on_error)

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        self.timers.append(Timer(interval, fn))

    def after_events(self, fn: Callable[[], None]) -> None:
        self._after_events.append(fn)

    def on_connect(self, fn: Callable[[], None]) -> None:
        self._on_connect.append(fn)

    # -- publishing

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
        persistent: bool = True,
        mandatory: bool = False,
        user_id: str | None = None,
        expiration: float | None = None,
    ) -> None:
        self._maybe_fail()
        self._take(
            Published(
                exchange,
                routing_key,
                body,
                headers=dict(headers or {}),
                reply_to=reply_to,
                correlation_id=correlation_id,
                message_id=message_id,
                persistent=persistent,
                mandatory=mandatory,
                user_id=user_id,
                expiration=expiration,
            )
        )

    @staticmethod
    def message(
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        correlation_id: str | None = None,
        persistent: bool = True,
        user_id: str | None = None,
    ) -> Outbound:
        return Outbound(
            exchange,
            routing_key,
            body,
            correlation_id=correlation_id,
            persistent=persistent,
            user_id=user_id,
        )

    def publish_batch(self, batch: Sequence[Outbound]) -> None:
        if not batch:
            return
        self._maybe_fail()
        for message in batch:
            self._take(
                Published(
                    message.exchange,
                    message.routing_key,
                    message.body,
                    headers=dict(message.headers or {}),
                    correlation_id=message.correlation_id,
                    persistent=message.persistent,
                    user_id=message.user_id,
                )
            )
        while self.while_confirming:
            self.while_confirming.pop(0)()

    def reply(self, delivery: Delivery, body: bytes) -> None:
        if delivery.reply_to:
            self.publish(
                "",
                delivery.reply_to,
                body,
                correlation_id=delivery.correlation_id,
                persistent=False,
            )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        copy = dead_letter_copy(delivery, reason)
        self.publish(copy.exchange, copy.routing_key, copy.body, headers=copy.headers)
        self.dead_letters.append((delivery, reason))
        self.ack(delivery)

    # -- settling

    def ack(self, delivery: Delivery) -> None:
        self.ack_batch([delivery])

    def ack_batch(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if self._settle(delivery):
                self.acked.append(delivery)
                self.log.append(("ack", delivery))

    def reject(self, delivery: Delivery, requeue: bool = False) -> None:
        if self._settle(delivery):
            self.rejected.append((delivery, requeue))
            self.log.append(("reject", delivery))

    # -- from any thread

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append(fn)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def user(self) -> str:
        return self._user

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def callbacks(self) -> list[Callable[[], None]]:
        """What call_threadsafe queued and was not run yet."""
        with self._lock:
            return list(self._pending)

    # -- driving it

    def deliver(
        self,
        queue: str,
        body: bytes,
        *,
        routing_key: str = "",
        exchange: str = "",
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
        user_id: str | None = None,
        redelivered: bool = False,
    ) -> Delivery:
        """Hand a message to the consumer of queue, as the bus would; returns it.

        A handler that raises gets it rejected (requeued when its consumer says so).
        """
        consumer = self.consumers.get(queue)
        if consumer is None:
            raise LookupError(f"nothing consumes {queue!r}; consumed: {sorted(self.consumers)}")
        delivery = Delivery(
            body=body,
            exchange=exchange,
            routing_key=routing_key,
            headers=dict(headers or {}),
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=message_id,
            user_id=user_id,
            redelivered=redelivered,
            queue=queue,
            tag=self._next_tag,
            generation=self.generation,
        )
        self._next_tag += 1
        handle(self._name, consumer, delivery, self._reject_failed)
        return delivery

    def run_callbacks(self) -> None:
        """Run what call_threadsafe queued, in order, including what those queue."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                fn = self._pending.pop(0)
            fn()

    def fire_timers(self) -> None:
        """Fire every timer once, as if each interval had passed."""
        for timer in list(self.timers):
            fire(self._name, timer)

    def process_events(self, time_limit: float = 0.0) -> None:
        """Run queued callbacks, then the after_events hooks (time_limit is ignored)."""
        self.run_callbacks()
        for fn in self._after_events:
            fn()

    def connect(self) -> None:
        """Run the on_connect hooks, as after a connection."""
        self.connected = True
        for fn in self._on_connect:
            fn()

    def reconnect(self) -> None:
        """As after a lost connection: deliveries handed out so far can no longer be
        settled, and the on_connect hooks run again."""
        self.generation += 1
        self._settled.clear()
        for topology in self._again:  # declared again first, as by the real bus
            self._refuse_locked(topology)
        self.connect()

    def run(self) -> None:
        """Serve callbacks and after_events hooks until stop(); timers fire only when told."""
        self.connect()
        while not self._stopping:
            self._wake.wait(0.1)
            self._wake.clear()
            self.process_events()

    def close(self) -> None:
        self._stopping = True
        self.connected = False
        self._wake.set()

    # -- internals

    def _refuse_locked(self, topology: Topology) -> None:
        for queue in topology.queues:
            if queue.exclusive and queue.name in self.locked:
                raise ResourceLocked(f"queue {queue.name} is held by another connection")

    def _maybe_fail(self) -> None:
        error, self.fail_next = self.fail_next, None
        if error is not None:
            raise error

    def _take(self, message: Published) -> None:
        for check in self.checks:
            check(message)
        self.published.append(message)
        self.log.append(("publish", message))

    def _settle(self, delivery: Delivery) -> bool:
        if delivery.generation != self.generation:
            log.debug("not settling a delivery of a dead channel")
            return False
        if delivery.tag in self._settled:  # acking twice would close a real channel
            log.warning("%s: %s was acked or rejected already", self._name, delivery.routing_key)
            return False
        self._settled.add(delivery.tag)
        return True

    def _reject_failed(self, delivery: Delivery, requeue: bool) -> None:
        self.reject(delivery, requeue=requeue)


if TYPE_CHECKING:  # mypy proves the stub answers to the same Protocol as Bus
    _conforms: MessageBus = StubBus()
