"""Short-lived AMQP use for clients: request/reply, following a stream or watching an exchange.

Requests use RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no reply queue is
declared, and a reply that arrives after the asker gave up is dropped by the broker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
import pika.exceptions
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.bus.brokers import Brokers
from shared.bus.connection import RECONNECT_ERRORS, abandon
from shared.errors import BrokerUnreachable, MessagingError, NoManagerError, Unanswered
from shared.reply_channel import ReplyChannel, publish_mandatory
from shared.settings import Settings, redact
from shared.topology import topic_matches

log = logging.getLogger(__name__)

T = TypeVar("T")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
STREAM_PREFETCH = 256  # stream deliveries in flight to one reader before it acks
RESUME_FOR = 60.0
"""How long a stream reader that lost its broker keeps trying to read on: a failover (a
new leader elected, a node restarted) takes seconds; a cluster gone for a minute is down."""
RESUME_FIRST_DELAY = 0.5
RESUME_MAX_DELAY = 5.0


@dataclass(frozen=True)
class Message:
    """A message read by a watcher."""

    routing_key: str
    body: bytes


class RpcChannel:
    """One connection for one client: publish, ask and wait, or watch."""

    def __init__(self, settings: Settings, name: str = "kube-client") -> None:
        self._settings = settings
        self._brokers = Brokers(settings)
        self._name = name
        self._connection = self._reach()
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        # The broker checks user_id against the login, so the manager can trust it; absent
        # when the login has no user name (TLS with EXTERNAL authentication).
        self._user: str | None = getattr(
            pika.URLParameters(self._brokers.current or settings.amqp_urls[0]).credentials,
            "username",
            None,
        )
        self._replies: dict[str, bytes] = {}
        self._reply_consumer: str | None = None

    def _reach(self) -> pika.BlockingConnection:
        """A connection, or the reason none can be made (BrokerUnreachable, LoginRefused,
        VhostRefused: shared/bus/brokers.py translates pika's)."""
        return self._connect(self._name)

    def reconnect(self) -> None:
        """Connect again, beginning with the broker after the one that was lost; requests
        and new subscriptions go on the new connection."""
        log.warning("%s: lost the broker; connecting again", self._name)
        lost = self._connection
        self._connection = self._reach()
        if lost.is_open:  # a channel error: the old connection is kept by nothing now
            abandon(lost)
        self._reopen()

    def _stream_channel(self) -> Any:
        """A channel on a new connection, for a stream reader whose connection was lost."""
        self.reconnect()
        channel = self._connection.channel()
        channel.basic_qos(prefetch_count=STREAM_PREFETCH)  # a stream consumer needs one
        return channel

    @retry(  # a broker restarting may come back; a refused login or vhost will not
        retry=retry_if_exception_type(BrokerUnreachable),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _connect(self, name: str) -> pika.BlockingConnection:
        return self._brokers.connect(name)

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish persistently with a confirm; NoManagerError when no queue takes it."""
        self._again_if_lost(
            f"publish to {exchange}/{routing_key}",
            lambda: self._publish(
                exchange, routing_key, body, reply_to, correlation_id, message_id
            ),
        )

    def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        reply_to: str | None,
        correlation_id: str | None,
        message_id: str | None,
    ) -> None:
        try:
            publish_mandatory(
                self._channel,
                exchange,
                routing_key,
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    reply_to=reply_to,
                    correlation_id=correlation_id,
                    message_id=message_id,
                    user_id=self._user,
                ),
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code == 404:
                raise NoManagerError(
                    f"exchange {exchange} does not exist: no manager has run against"
                    f" {redact(self._settings.amqp_url)} yet; start `kube manager`"
                ) from exc
            raise MessagingError(f"publish to {exchange}/{routing_key} refused: {exc}") from exc

    def _again_if_lost(self, what: str, call: Callable[[], T]) -> T:
        """Make the call; if the connection turns out lost, once more on a new one.

        A blocking connection sends heartbeats only while in use, so the broker closes one
        left idle for a minute or two, and the client learns it only at its next call: that
        call is made again on a new connection. What this client sends is safe to send
        twice: a submit carries its task id, and the other requests set a state.
        """
        for attempt in (1, 2):
            self._ensure_open()
            try:
                return call()
            except pika.exceptions.ChannelClosedByBroker:
                raise  # a refusal on a live connection: the call says what it means
            except RECONNECT_ERRORS as exc:
                if attempt == 2:
                    raise MessagingError(f"{what} failed: {exc!r}") from exc
                log.info("%s: %s found the connection lost (%r); again on a new one",
                         self._name, what, exc)  # fmt: skip
                self.reconnect()
        raise AssertionError("unreachable")

    def _ensure_open(self) -> None:
        """A connection known lost is made anew, a channel known closed is opened again."""
        if not self._connection.is_open:
            self.reconnect()
        elif not self._channel.is_open:
            self._reopen()

    def _reopen(self) -> None:
        """A channel error closes the channel: open a fresh one for the next call."""
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._reply_consumer = None

    def request(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        timeout: float | None = None,
        message_id: str | None = None,
    ) -> bytes:
        """Publish with reply_to and correlation_id, and return the reply's body."""
        timeout = self._settings.request_timeout if timeout is None else timeout
        correlation_id = uuid.uuid4().hex

        def send() -> None:
            if self._reply_consumer is None:  # on this channel: the reply comes to it
                self._reply_consumer = self._channel.basic_consume(
                    DIRECT_REPLY_TO, self._on_reply, auto_ack=True
                )
            self._publish(exchange, routing_key, body, DIRECT_REPLY_TO, correlation_id, message_id)

        self._again_if_lost(f"publish to {exchange}/{routing_key}", send)
        deadline = time.monotonic() + timeout
        while correlation_id not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unanswered(
                    f"no answer to {routing_key} within {timeout:g}s from"
                    f" {redact(self._settings.amqp_url)}: is `kube manager` running?",
                    routing_key,
                    timeout,
                )
            try:
                self._connection.process_data_events(time_limit=min(left, 0.2))
            except (pika.exceptions.AMQPError, *RECONNECT_ERRORS) as exc:
                raise MessagingError(
                    f"lost the broker while waiting for {routing_key}: {exc!r}"
                ) from exc
        return self._replies.pop(correlation_id)

    def reply_channel(self) -> ReplyChannel:
        """A channel of its own on this connection, for many answers (streaming sessions)."""
        self._ensure_open()
        return ReplyChannel(self._connection, self._user)

    def held(self, queue: str) -> bool:
        """Whether a queue exists on the vhost; for an exclusive one (a manager's lock,
        shared/topology.py), whether another connection holds it."""
        try:
            self._again_if_lost(
                f"check queue {queue}", lambda: self._channel.queue_declare(queue, passive=True)
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code == 404:  # NOT_FOUND: nobody holds it
                return False
            if exc.reply_code == 405:  # RESOURCE_LOCKED: another connection holds it
                return True
            raise MessagingError(f"cannot check queue {queue}: {exc}") from exc
        except RECONNECT_ERRORS as exc:
            raise MessagingError(f"cannot check queue {queue}: {exc!r}") from exc
        return True

    def hold(self, queue: str) -> bool:
        """Take an exclusive queue as a lock, held while this connection lasts; False if
        another connection holds it."""
        try:
            self._again_if_lost(
                f"take queue {queue}",
                lambda: self._channel.queue_declare(queue, exclusive=True, auto_delete=True),
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code == 405:  # RESOURCE_LOCKED: another connection holds it
                return False
            raise MessagingError(f"cannot take queue {queue}: {exc}") from exc
        except RECONNECT_ERRORS as exc:
            raise MessagingError(f"cannot take queue {queue}: {exc!r}") from exc
        return True

    def _on_reply(self, ch: Any, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        if props.correlation_id:
            self._replies[props.correlation_id] = body

    def watch(self, exchange: str, keys: list[str]) -> Subscription:
        """Bind a temporary queue to exchange; iterate the result for what arrives.

        The queue is bound when this returns, so nothing published afterwards is missed.
        Close the subscription (or use it as a context manager) to delete the queue and
        its channel; otherwise they last as long as the connection.
        """
        self._ensure_open()
        channel = self._connection.channel()  # its own channel: requests go on meanwhile
        try:
            result = channel.queue_declare("", exclusive=True, auto_delete=True)
            queue = result.method.queue
            for key in keys:
                channel.queue_bind(queue, exchange, key)
        except pika.exceptions.AMQPError as exc:
            raise MessagingError(f"cannot watch {exchange}: {exc!r}") from exc
        return Subscription(channel, queue)

    def follow(self, stream: str, keys: list[str]) -> Subscription:
        """Read a stream queue from its end on; iterate for the messages whose routing key
        matches one of keys (AMQP topic patterns, matched here: a stream is not bound).

        Reading needs only read permission on the stream: no queue or binding is made.
        Attached when this returns, so nothing published afterwards is missed; when the
        connection is lost, the reader connects again (to the next broker) and goes on
        after the last message it gave, so nothing is missed across that either.
        """
        self._ensure_open()
        channel = self._connection.channel()
        try:
            channel.basic_qos(prefetch_count=STREAM_PREFETCH)  # a stream consumer needs one
            return Subscription(
                channel,
                stream,
                temporary=False,
                keys=keys,
                arguments={"x-stream-offset": "next"},
                reconnect=self._stream_channel,
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise NoManagerError(
                    f"no {stream} to read events from: no manager has run against"
                    f" {redact(self._settings.amqp_url)} yet; start `kube manager`"
                ) from exc
            raise MessagingError(f"cannot read {stream}: {exc!r}") from exc
        except pika.exceptions.AMQPError as exc:
            raise MessagingError(f"cannot read {stream}: {exc!r}") from exc

    def close(self) -> None:
        try:
            if self._connection.is_open:
                self._connection.close()
        except Exception:  # noqa: BLE001 - nothing to do about a failed close
            log.debug("error closing the client connection", exc_info=True)

    def __enter__(self) -> RpcChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Subscription:
    """Deliveries read on a channel of its own: a temporary queue, or a stream from its end.

    Iterating yields a Message per delivery whose routing key matches one of `keys` (all
    when None), and None about every 0.2 s when nothing came, so the caller can check a
    deadline. close() closes the channel, deleting the queue if it is a temporary one.

    A stream reader given `reconnect` (which returns a channel on a new connection)
    survives the loss of its connection: it consumes again from the offset after the last
    message it gave. A temporary queue dies with its connection, and so does its reader.
    """

    def __init__(
        self,
        channel: Any,
        queue: str,
        *,
        temporary: bool = True,
        keys: list[str] | None = None,
        arguments: dict[str, Any] | None = None,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._temporary = temporary
        self._keys = keys
        self._reconnect = None if temporary else reconnect
        self._ready: deque[tuple[int, str, bytes, int | None]] = deque()
        self._last_tag = self._acked_tag = 0  # the delivery tags received and acked
        self._resume_at: int | None = None  # the stream offset after the last message given
        # basic_consume waits for consume-ok: attached when this returns (a stream reader
        # starting at "next" then misses nothing published afterwards)
        channel.basic_consume(queue, self._on_message, auto_ack=temporary, arguments=arguments)

    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        offset = (props.headers or {}).get("x-stream-offset") if props is not None else None
        self._ready.append((method.delivery_tag, method.routing_key, body, offset))
        self._last_tag = method.delivery_tag

    def _resume(self) -> None:
        """Consume the stream again on a new connection, after the last message given;
        what had arrived but was not given yet comes again."""
        assert self._reconnect is not None
        self._ready.clear()
        self._last_tag = self._acked_tag = 0
        self._channel = self._reconnect()
        offset: int | str = "next" if self._resume_at is None else self._resume_at
        self._channel.basic_consume(
            self._queue, self._on_message, auto_ack=False, arguments={"x-stream-offset": offset}
        )

    def _resume_within(self, seconds: float) -> None:
        """Resume, trying again with backoff for `seconds`: while a cluster fails over, a
        node refuses to serve a stream whose member it has lost or not yet started
        (406 "does not have a replica on the local node", 506 "does not have a running
        local replica"), and a reconnect goes on to the next broker."""
        deadline = time.monotonic() + seconds
        delay = RESUME_FIRST_DELAY
        while True:
            try:
                self._resume()
                return
            except (pika.exceptions.AMQPError, MessagingError, *RECONNECT_ERRORS) as again:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MessagingError(
                        f"cannot read {self._queue} again within {seconds:g}s: {again!r}"
                    ) from again
                log.warning(
                    "cannot read %s again yet (%r); retrying in %.1fs", self._queue, again, delay
                )
                time.sleep(min(delay, left))
                delay = min(delay * 2, RESUME_MAX_DELAY)

    def _ack_all(self) -> None:
        if self._last_tag > self._acked_tag:
            self._channel.basic_ack(self._last_tag, multiple=True)
            self._acked_tag = self._last_tag
        self._ready.clear()

    def __iter__(self) -> Iterator[Message | None]:
        return self

    def __next__(self) -> Message | None:
        try:
            return self._next()
        except RECONNECT_ERRORS as exc:
            if self._reconnect is None:
                raise MessagingError(f"lost the broker while watching: {exc!r}") from exc
            log.warning("lost the broker while reading %s (%r)", self._queue, exc)
            self._resume_within(RESUME_FOR)
            return None
        except pika.exceptions.AMQPError as exc:
            raise MessagingError(f"lost the broker while watching: {exc!r}") from exc

    def _next(self) -> Message | None:
        for waited in (False, True):
            while self._ready:
                tag, key, body, offset = self._ready[0]
                if not self._temporary:  # a stream consumer must ack (its flow control)
                    self._channel.basic_ack(tag)
                    self._acked_tag = tag
                self._ready.popleft()  # acked: not to be read again after a reconnect
                if offset is not None:
                    self._resume_at = offset + 1
                if self._keys is None or any(topic_matches(k, key) for k in self._keys):
                    return Message(key, body)
            if not waited:
                self._channel.connection.process_data_events(time_limit=0.2)
        return None

    def close(self) -> None:
        """Close the channel, deleting a temporary queue (nothing to do once it is gone)."""
        if not self._channel.is_open:
            return
        try:
            if self._temporary:
                self._channel.queue_delete(self._queue)
            else:
                # a stream takes no reject: ack what came, so that closing the channel
                # (which rejects whatever pika still holds unacked) has nothing to reject
                self._channel.connection.process_data_events(time_limit=0)
                self._ack_all()
            self._channel.close()
        except pika.exceptions.AMQPError as exc:
            log.warning("could not close the watch of %s: %r", self._queue, exc)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
