"""A channel of a client's own for a conversation: many messages out, many answers back.

Streaming sessions (kube/sessions.py) need more than one reply per request: every frame
of a session comes to the reply_to of the request that opened it. RabbitMQ's direct
reply-to gives that with no queue to declare or delete: the broker names the address
after this channel, and a message for it once the channel is closed is dropped. So what
is sent from here (with reply_to) is answered here, and nothing is left on the broker when
the channel or the process goes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import pika
import pika.exceptions

from shared.bus.connection import RECONNECT_ERRORS
from shared.errors import MessagingError, NoManagerError

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def publish_mandatory(
    channel: Any, exchange: str, routing_key: str, body: bytes, properties: Any
) -> None:
    """Publish on a confirming channel; NoManagerError when no queue takes the message."""
    try:
        channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
    except pika.exceptions.UnroutableError as exc:
        raise NoManagerError(
            f"no queue is bound for {exchange}/{routing_key}: has a manager ever run"
            " against this broker and vhost?"
        ) from exc


class ReplyChannel:
    """Publish with reply_to on this channel; read every answer that comes back to it."""

    def __init__(self, connection: pika.BlockingConnection, user: str | None) -> None:
        self._connection = connection
        self._user = user
        try:
            self._channel: Any = connection.channel()
            self._channel.confirm_delivery()
            self._channel.basic_consume(DIRECT_REPLY_TO, self._on_message, auto_ack=True)
        except (pika.exceptions.AMQPError, *RECONNECT_ERRORS) as exc:
            raise MessagingError(f"cannot open a reply channel: {exc!r}") from exc
        self._received: deque[tuple[str | None, bytes]] = deque()

    def _on_message(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        self._received.append((props.correlation_id if props else None, body))

    def publish(
        self, exchange: str, routing_key: str, body: bytes, correlation_id: str | None = None
    ) -> None:
        """Publish (confirmed) with this channel as reply_to; NoManagerError if unroutable."""
        properties = pika.BasicProperties(
            content_type="application/json",
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation_id,
            user_id=self._user,
        )
        try:
            publish_mandatory(self._channel, exchange, routing_key, body, properties)
        except (pika.exceptions.AMQPError, *RECONNECT_ERRORS) as exc:
            raise MessagingError(f"publish to {exchange}/{routing_key} failed: {exc!r}") from exc

    def receive(self, timeout: float) -> list[tuple[str | None, bytes]]:
        """What came back (correlation id, body), waiting up to `timeout` for the first."""
        deadline = time.monotonic() + timeout
        try:
            while not self._received:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._connection.process_data_events(time_limit=min(left, 0.2))
            if self._received:  # take what else is already there, without waiting
                self._connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, *RECONNECT_ERRORS) as exc:
            raise MessagingError(f"lost the broker while reading answers: {exc!r}") from exc
        found = list(self._received)
        self._received.clear()
        return found

    def close(self) -> None:
        """Close the channel: its address is gone, and whatever comes for it is dropped."""
        try:
            if self._channel.is_open:
                self._channel.close()
        except (pika.exceptions.AMQPError, *RECONNECT_ERRORS) as exc:
            log.debug("reply channel closed with its connection: %r", exc)
