"""The AMQP plumbing of long-running components, on pika: `Bus`.

A `Bus` owns one pika connection, used only from the thread that calls `run()`. It
declares a topology, consumes queues with manual acks, publishes with publisher
confirms, and when the broker goes away (a restart arrives as ConnectionClosedByBroker
320) it reconnects with backoff, declares everything again and consumes again.
Deliveries that were in flight when the connection died are redelivered by the broker,
so every handler must be idempotent; acks for a dead channel are dropped.

Other threads talk to the bus only through `call_threadsafe(fn)`: fn runs on the bus
thread, where it may publish and ack.

pika's errors do not leave it: a lost connection is `ConnectionLost`, a refusal
`MessagingError` or `UnroutableError` (shared.errors).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared import metrics
from shared.bus import acks, declare
from shared.bus.brokers import Brokers
from shared.bus.confirms import ConfirmStream, Nacked, Unconfirmed
from shared.bus.connection import HEARTBEAT, LOST, abandon, translated, user_of
from shared.bus.consume import Consumer, delivery_from, handle
from shared.bus.message import Delivery, Handler, Outbound, dead_letter_copy
from shared.bus.timers import Timer, fire
from shared.errors import ConnectionLost, MessagingError, ResourceLocked, UnroutableError
from shared.settings import Settings, redact
from shared.topology import Topology

log = logging.getLogger("shared.bus")

MAX_RECONNECT_DELAY = 2.0
"""Reconnect backoff doubles from 0.5 s to this: short, so a worker is back within a
heartbeat or two of the broker (longer, and the manager would call it down)."""


@dataclass
class _State:
    connection: pika.BlockingConnection | None = None
    channel: BlockingChannel | None = None
    generation: int = 0
    unacked: set[int] = field(default_factory=set)  # tags handed to handlers, not settled
    pending: collections.deque[Callable[[], None]] = field(default_factory=collections.deque)


class Bus:
    """One connection, one channel, confirmed publishes, reconnects by itself."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        prefetch: int = 64,
        silent_after: float | None = None,
        heartbeat: int = HEARTBEAT,
    ) -> None:
        """`heartbeat`: seconds of the AMQP heartbeat asked for (the broker drops a frozen
        process after about two).

        `silent_after`: seconds without a confirm (the broker not blocking us) after
        which the connection is presumed dead, dropped and made again; a publish waits
        that long for its confirms. None: a publish waits 30 s, then fails (MessagingError)
        and the connection is kept. Across a cut link a kept connection resumes only when
        TCP next retransmits, tens of seconds after the link is back; a new one at once."""
        self._silent_after = silent_after
        self._settings = settings
        self._brokers = Brokers(settings, heartbeat)
        self._name = name
        self._prefetch = prefetch
        self._topologies: list[Topology] = []
        self._consumers: list[Consumer] = []
        self._timers: list[Timer] = []
        self._on_connect: list[Callable[[], None]] = []
        self._on_blocked: list[Callable[[bool], None]] = []
        self._blocked = False
        self._after_events: list[Callable[[], None]] = []
        self._stream: ConfirmStream | None = None
        self._state = _State()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connected_once = False  # a lock held at the first connect is not ours
        self._runner: threading.Thread | None = None

    # -- set-up, before or during run() -------------------------------------------------

    def declare(self, topology: Topology, again: bool = True) -> None:
        """Declare now if connected, and (unless not `again`) after every reconnect."""
        if again:
            self._topologies.append(topology)
        connection = self._state.connection
        if self._state.channel is not None and connection is not None:
            with translated(f"{self._name}: declaring"):
                declare.apply(connection, topology, self._name)

    def consume(self, queue: str, handler: Handler, requeue_on_error: bool = True) -> None:
        """Call handler for each message of queue; the handler acks or rejects it.

        A handler that raises gets its message rejected, requeued when requeue_on_error
        (a quorum queue's delivery limit then dead-letters a message that always fails).
        """
        consumer = Consumer(queue, handler, requeue_on_error)
        metrics.consuming(queue)
        self._consumers.append(consumer)
        if self._state.channel is not None:
            with translated(f"{self._name}: consuming {queue}"):
                self._start_consumer(self._state.channel, consumer)

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread every interval seconds while connected."""
        timer = Timer(interval, fn)
        self._timers.append(timer)
        if self._state.connection is not None:
            self._arm(timer, self._state.generation)

    def after_events(self, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread each time the deliveries that had arrived were handled:
        the place to publish and ack what those handlers left for a batch."""
        self._after_events.append(fn)

    def on_connect(self, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread after each (re)connection, once declared."""
        self._on_connect.append(fn)

    def on_blocked(self, fn: Callable[[bool], None]) -> None:
        """Run fn(blocked) on the bus thread when the broker blocks publishers (a resource
        alarm: `connection.blocked`) and when it unblocks them."""
        self._on_blocked.append(fn)

    @property
    def connected(self) -> bool:
        """Whether the bus holds a connection now (read from any thread)."""
        return self._state.connection is not None

    @property
    def blocked(self) -> bool:
        """Whether the broker blocks this connection's publishes now (a resource alarm)."""
        return self._blocked

    # -- on the bus thread -------------------------------------------------------------

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
        """Publish and wait for the broker's confirm; raises UnroutableError when returned.

        user_id, when given, must be `self.user`: RabbitMQ validates it, so a consumer
        knows which broker user published the message.
        """
        channel = self._require_channel()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent if persistent else None,
            headers=headers,
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=message_id,
            timestamp=int(time.time()),
            user_id=user_id,
            expiration=None if expiration is None else str(max(int(expiration * 1000), 0)),
        )
        with translated(f"{self._name}: publishing to {exchange}/{routing_key}"):
            try:
                channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
            except pika.exceptions.UnroutableError as exc:
                metrics.published(exchange, "returned")
                raise UnroutableError(f"no queue is bound for {exchange}/{routing_key}") from exc
            except pika.exceptions.NackError as exc:
                metrics.published(exchange, "nacked")
                raise MessagingError(
                    f"broker refused a publish to {exchange}/{routing_key}"
                ) from exc
        metrics.published(exchange, "confirmed")

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
        """A message for publish_batch (user_id as for `publish`)."""
        return Outbound(
            exchange,
            routing_key,
            body,
            correlation_id=correlation_id,
            persistent=persistent,
            user_id=user_id,
        )

    def publish_batch(self, batch: Sequence[Outbound]) -> None:
        """Publish many messages and wait once for all their confirms (bus thread only).

        Not from inside a handler: waiting serves the connection, which may run others.
        """
        if not batch:
            return
        connection = self._state.connection
        if connection is None:
            raise ConnectionLost(f"{self._name}: not connected")
        try:
            with translated(f"{self._name}: publishing {len(batch)} messages"):
                if self._stream is None:
                    self._stream = ConfirmStream(connection)
                self._stream.publish(
                    batch, timeout=self._silent_after or 30.0, give_up=lambda: self._blocked
                )
        except ConnectionLost:
            raise
        except Unconfirmed as exc:
            for message in batch:
                metrics.published(message.exchange, "nacked")
            if self._silent_after is None:
                raise
            self._abandon()
            raise ConnectionLost(f"{self._name}: {exc}: the connection is presumed dead") from exc
        except Nacked as exc:
            for message in batch:
                metrics.published(message.exchange, "nacked")
            if self._silent_after is None or self._blocked:
                raise
            # Seen when a RabbitMQ node was killed: a channel opened on another node while
            # the quorum queues elected new leaders kept sending to the dead one, and every
            # publish was refused until that node came back (11 s; the worker was called
            # down). A new connection, to the next broker, starts a new session.
            self._abandon()
            raise ConnectionLost(f"{self._name}: {exc}: connecting again") from exc
        except MessagingError:
            for message in batch:
                metrics.published(message.exchange, "nacked")
            raise
        for message in batch:
            metrics.published(message.exchange, "confirmed")

    def reply(self, delivery: Delivery, body: bytes) -> None:
        """Answer a request that carried reply_to; a message without one needs no answer."""
        if delivery.reply_to:
            self.publish(
                "",
                delivery.reply_to,
                body,
                correlation_id=delivery.correlation_id,
                persistent=False,
            )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message to the dead-letter exchange with the reason in its headers, then ack.

        RabbitMQ's own dead-lettering (reject without requeue) records only "rejected";
        republishing lets the reason travel with the message.
        """
        copy = dead_letter_copy(delivery, reason)  # trimmed to fit the broker's frame
        self.publish(copy.exchange, copy.routing_key, copy.body, headers=copy.headers)
        metrics.dead_lettered(delivery.queue)
        self.ack(delivery)

    def queue_depth(self, queue: str) -> int:
        """How many messages wait in a queue, not yet delivered to any consumer."""
        channel = self._require_channel()
        with translated(f"{self._name}: reading the depth of {queue}"):
            frame = channel.queue_declare(queue, passive=True)
        return int(frame.method.message_count)

    def peek(self, queue: str) -> bytes | None:
        """The body of the message at the head of a queue, left there (None: empty)."""
        channel = self._require_channel()
        with translated(f"{self._name}: reading {queue}"):
            method, _, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return None
            channel.basic_nack(method.delivery_tag, requeue=True)
        return bytes(body)

    def consumers_of(self, queue: str) -> int:
        """How many consumers a queue has now (a passive declare: no right to configure
        it is needed)."""
        channel = self._require_channel()
        with translated(f"{self._name}: reading the consumers of {queue}"):
            frame = channel.queue_declare(queue, passive=True)
        return int(frame.method.consumer_count)

    def delete_queue(self, queue: str) -> None:
        """Delete a queue with whatever it holds (a removed node's)."""
        channel = self._require_channel()
        with translated(f"{self._name}: deleting {queue}"):
            channel.queue_delete(queue)
        self.forget(queue)

    def forget(self, queue: str) -> None:
        """Stop declaring a queue after reconnects (it was deleted)."""
        self._topologies = [
            t for t in self._topologies if not any(q.name == queue for q in t.queues)
        ]

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge; a delivery from a channel that has since died is left to redelivery."""
        self.ack_batch([delivery])

    def ack_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge many deliveries in one socket write (bus thread only).

        Deliveries from a channel that has since died are left to redelivery.
        """
        channel = self._state.channel
        current = [
            d for d in deliveries if channel is not None and d.generation == self._state.generation
        ]
        if len(current) < len(deliveries):
            log.debug("not acking %d deliveries of a dead channel", len(deliveries) - len(current))
        if channel is None:
            return
        unacked = self._state.unacked
        settled = [d for d in current if d.tag not in unacked]
        for delivery in settled:  # acking twice would close the channel
            log.warning("%s: %s was acked or rejected already", self._name, delivery.routing_key)
        tags = sorted(d.tag for d in current if d.tag in unacked)
        if not tags:
            return
        frames = acks.ack_frames(tags, unacked)
        unacked -= set(tags)
        with translated(f"{self._name}: acking"):
            acks.write_acks(channel, frames)

    def reject(self, delivery: Delivery, requeue: bool = False) -> None:
        channel = self._state.channel
        if channel is None or delivery.generation != self._state.generation:
            return
        self._state.unacked.discard(delivery.tag)
        with translated(f"{self._name}: rejecting"):
            channel.basic_reject(delivery.tag, requeue=requeue)

    # -- from any thread ---------------------------------------------------------------

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread soon; kept until the next connection if there is none."""
        with self._lock:
            self._state.pending.append(fn)
            connection = self._state.connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(self._drain)
            except Exception:  # noqa: BLE001 - the connection died; run() drains after reconnect
                log.debug("connection gone; callback kept for the next connection")

    def stop(self) -> None:
        """Ask run() to return; safe from any thread or signal handler."""
        self._stopping.set()
        connection = self._state.connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)
            except Exception:  # noqa: BLE001 - already closed: run() notices _stopping
                log.debug("stop: connection already closed")

    @property
    def user(self) -> str:
        """The broker user this bus logs in as: the one value RabbitMQ accepts in user_id."""
        return user_of(self._settings)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the loop ----------------------------------------------------------------------

    def connect(self) -> None:
        """Connect (retrying with backoff until stopped) and set everything up."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._connect_once()
                self._connected_once = True
                return
            except ResourceLocked as exc:
                self._close()
                if not self._connected_once:
                    raise  # held before we ever ran: someone else runs here
                # ours, on a connection the broker has not yet seen die: wait it out
                log.warning(
                    "%s: %s, perhaps still this process's previous connection, which the"
                    " broker drops once it misses its heartbeats; retrying in %.1fs",
                    self._name,
                    exc,
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            except LOST as exc:
                log.warning(
                    "%s: cannot connect and set up at %s (%s: %s); retrying in %.1fs",
                    self._name,
                    redact(self._brokers.current or self._settings.amqp_url),
                    exc.__class__.__name__,
                    exc,
                    delay,
                )
                self._close()
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def run(self) -> None:
        """Serve until stop(): consume, fire timers, run callbacks; reconnect on failure."""
        self._runner = threading.current_thread()
        try:
            self._serve()
        finally:
            self._runner = None

    def _serve(self) -> None:
        while not self._stopping.is_set():
            if self._state.connection is None:
                self.connect()
                continue
            try:
                self._drain()
                self._state.connection.process_data_events(time_limit=0.5)
                for fn in self._after_events:
                    fn()
            except LOST as exc:
                log.warning(
                    "%s: lost the broker connection (%s: %s); reconnecting",
                    self._name,
                    exc.__class__.__name__,
                    exc,
                )
                self._close()
        self._close()

    def process_events(self, time_limit: float = 0.0) -> None:
        """Serve the connection once (for tests and short-lived users)."""
        if self._state.connection is None:
            self.connect()
        connection = self._state.connection
        if connection is None:
            raise ConnectionLost(f"{self._name}: not connected (stopped)")
        with translated(f"{self._name}: serving the connection"):
            self._drain()
            connection.process_data_events(time_limit=time_limit)
        for fn in self._after_events:
            fn()

    def close(self) -> None:
        """Stop and close; from another thread than run()'s, wait for run() to return."""
        self._stopping.set()
        runner = self._runner
        if runner is not None and runner is not threading.current_thread():
            self.stop()
            runner.join(timeout=10)
        else:
            self._close()

    # -- internals ---------------------------------------------------------------------

    def _connect_once(self) -> None:
        connection = self._brokers.connect(self._name)
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=self._prefetch)
        with self._lock:
            self._state.connection = connection
            self._state.channel = channel
            self._state.generation += 1
            self._state.unacked = set()
        self._blocked = False
        connection.add_on_connection_blocked_callback(lambda *_: self._set_blocked(True))
        connection.add_on_connection_unblocked_callback(lambda *_: self._set_blocked(False))
        for topology in self._topologies:
            declare.apply(connection, topology, self._name)
        for consumer in self._consumers:
            self._start_consumer(channel, consumer)
        for timer in self._timers:
            self._arm(timer, self._state.generation)
        log.info("%s: connected to %s", self._name, redact(self._brokers.current or ""))
        for fn in self._on_connect:
            fn()

    def _set_blocked(self, blocked: bool) -> None:
        if blocked == self._blocked:
            return
        self._blocked = blocked
        log.warning(
            "%s: the broker %s publishers", self._name, "blocks" if blocked else "unblocked"
        )
        for fn in self._on_blocked:
            fn(blocked)

    def _detach(self) -> pika.BlockingConnection | None:
        """Forget the connection, its channel and stream; return it, to be closed."""
        with self._lock:
            connection = self._state.connection
            self._state.connection = None
            self._state.channel = None
            self._stream = None
        return connection

    def _abandon(self) -> None:
        """Drop the connection without waiting for the broker (see `abandon`)."""
        connection = self._detach()
        if connection is not None and connection.is_open:
            log.warning("%s: the broker is silent; dropping the connection", self._name)
            abandon(connection)

    def _close(self) -> None:
        connection = self._detach()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail
                log.debug("%s: error while closing a broken connection", self._name)

    def _require_channel(self) -> BlockingChannel:
        channel = self._state.channel
        if channel is None:
            raise ConnectionLost(f"{self._name}: not connected")
        return channel

    def _start_consumer(self, channel: BlockingChannel, consumer: Consumer) -> None:
        generation = self._state.generation

        def on_message(ch: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
            delivery = delivery_from(method, props, body, consumer.queue, generation)
            if generation == self._state.generation:
                self._state.unacked.add(delivery.tag)
            handle(self._name, consumer, delivery, self._reject_failed)

        channel.basic_consume(consumer.queue, on_message, auto_ack=False)

    def _reject_failed(self, delivery: Delivery, requeue: bool) -> None:
        self.reject(delivery, requeue=requeue)

    def _arm(self, timer: Timer, generation: int) -> None:
        connection = self._state.connection
        if connection is None:
            return

        def fire_and_rearm() -> None:
            if generation != self._state.generation or self._stopping.is_set():
                return
            fire(self._name, timer)
            self._arm(timer, generation)

        connection.call_later(timer.interval, fire_and_rearm)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._state.pending or self._state.channel is None:
                    return
                fn = self._state.pending.popleft()
            try:
                fn()
            except LOST:
                with self._lock:
                    self._state.pending.appendleft(fn)
                raise
            except Exception:
                log.exception("%s: callback failed", self._name)
