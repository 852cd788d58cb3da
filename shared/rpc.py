"""Short-lived AMQP use for clients: request/reply and watching an exchange, on pika.

Requests use RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no reply queue is
declared, and a reply that arrives after the asker gave up is dropped by the broker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.bus.connection import RECONNECT_ERRORS, connection_parameters
from shared.errors import MessagingError, NoManagerError
from shared.settings import Settings, redact

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


@dataclass(frozen=True)
class Message:
    """A message read by a watcher."""

    routing_key: str
    body: bytes


class RpcChannel:
    """One connection for one client: publish, ask and wait, or watch."""

    def __init__(self, settings: Settings, name: str = "kube-client") -> None:
        self._settings = settings
        try:
            self._connection = self._connect(name)
        except RECONNECT_ERRORS as exc:
            raise MessagingError(
                f"cannot reach RabbitMQ at {redact(settings.amqp_url)}: {exc.__class__.__name__}"
                " (set KUBE_AMQP_URL, or start a broker)"
            ) from exc
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._replies: dict[str, bytes] = {}
        self._reply_consumer: str | None = None

    @retry(
        retry=retry_if_exception_type(RECONNECT_ERRORS),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def _connect(self, name: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(connection_parameters(self._settings, name))

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
        """Publish persistently with a confirm; UnroutableError when no queue takes it."""
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=message_id,
        )
        try:
            self._channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            raise NoManagerError(
                f"no queue is bound for {exchange}/{routing_key}: has a manager ever run"
                " against this broker and vhost?"
            ) from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reopen()
            if exc.reply_code == 404:
                raise NoManagerError(
                    f"exchange {exchange} does not exist: no manager has run against"
                    f" {redact(self._settings.amqp_url)} yet; start `kube manager`"
                ) from exc
            raise MessagingError(f"publish to {exchange}/{routing_key} refused: {exc}") from exc
        except RECONNECT_ERRORS as exc:
            raise MessagingError(f"publish to {exchange}/{routing_key} failed: {exc}") from exc

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
        if self._reply_consumer is None:
            self._reply_consumer = self._channel.basic_consume(
                DIRECT_REPLY_TO, self._on_reply, auto_ack=True
            )
        correlation_id = uuid.uuid4().hex
        self.publish(
            exchange,
            routing_key,
            body,
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation_id,
            message_id=message_id,
        )
        deadline = time.monotonic() + timeout
        while correlation_id not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoManagerError(
                    f"no answer to {routing_key} within {timeout:g}s from"
                    f" {redact(self._settings.amqp_url)}: is `kube manager` running?"
                )
            try:
                self._connection.process_data_events(time_limit=min(left, 0.2))
            except pika.exceptions.AMQPError as exc:
                raise MessagingError(
                    f"lost the broker while waiting for {routing_key}: {exc!r}"
                ) from exc
        return self._replies.pop(correlation_id)

    def _on_reply(self, ch: Any, method: Any, props: pika.BasicProperties, body: bytes) -> None:
        if props.correlation_id:
            self._replies[props.correlation_id] = body

    def watch(self, exchange: str, keys: list[str]) -> Subscription:
        """Bind a temporary queue to exchange; iterate the result for what arrives.

        The queue is bound when this returns, so nothing published afterwards is missed.
        Close the subscription (or use it as a context manager) to delete the queue and
        its channel; otherwise they last as long as the connection.
        """
        channel = self._connection.channel()  # its own channel: requests go on meanwhile
        try:
            result = channel.queue_declare("", exclusive=True, auto_delete=True)
            queue = result.method.queue
            for key in keys:
                channel.queue_bind(queue, exchange, key)
        except pika.exceptions.AMQPError as exc:
            raise MessagingError(f"cannot watch {exchange}: {exc!r}") from exc
        return Subscription(channel, queue)

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
    """A temporary queue bound to an exchange, read on a channel of its own.

    Iterating yields a Message per delivery, and None about every 0.2 s when nothing
    came, so the caller can check a deadline. close() deletes the queue and the channel.
    """

    def __init__(self, channel: Any, queue: str) -> None:
        self._channel = channel
        self._queue = queue
        self._deliveries = channel.consume(queue, auto_ack=True, inactivity_timeout=0.2)

    def __iter__(self) -> Iterator[Message | None]:
        return self

    def __next__(self) -> Message | None:
        try:
            method, _props, body = next(self._deliveries)
        except pika.exceptions.AMQPError as exc:
            raise MessagingError(f"lost the broker while watching: {exc!r}") from exc
        if method is None:
            return None
        return Message(method.routing_key, body)

    def close(self) -> None:
        """Delete the queue and close the channel (nothing to do once the connection is gone)."""
        if not self._channel.is_open:
            return
        try:
            self._channel.queue_delete(self._queue)
            self._channel.close()
        except pika.exceptions.AMQPError as exc:
            log.warning("could not remove the watch queue %s: %r", self._queue, exc)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
