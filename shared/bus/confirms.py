"""Publishing many messages with publisher confirms handled as a stream, on pika.

pika's BlockingChannel waits for each confirm before the next publish, which caps a
publisher near 1,000 messages a second here. A ConfirmStream publishes a batch on the
asynchronous channel under a BlockingChannel (pika's `_impl`, stable across pika 1.x),
then serves the connection until the broker has confirmed every message of the batch:
one round trip per batch instead of one per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.spec

from shared.bus.message import Outbound
from shared.errors import MessagingError


def properties(message: Outbound) -> pika.BasicProperties:
    """The AMQP properties of an outbound message."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent if message.persistent else None,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        user_id=message.user_id,
        headers=message.headers,
    )


class Unconfirmed(MessagingError):
    """The broker confirmed nothing more within the timeout (the broker did not block us)."""


class Nacked(MessagingError):
    """The broker refused (nacked) messages of a batch: a queue could not take them."""


class ConfirmStream:
    """A confirm-mode channel of its own that publishes batches and awaits their confirms."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection
        self._channel = connection.channel()
        self._impl: Any = self._channel._impl  # the async channel the blocking one wraps
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm)
        self._next_tag = 1
        self._unconfirmed: set[int] = set()
        self._nacked = 0

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tags = (
            {t for t in self._unconfirmed if t <= method.delivery_tag}
            if method.multiple
            else {method.delivery_tag}
        )
        self._unconfirmed -= tags
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked += len(tags)

    def publish(
        self,
        batch: Sequence[Outbound],
        timeout: float = 30.0,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        """Publish every message, then wait until the broker confirmed them all, or until
        `give_up()` says the confirms will not come soon (the broker blocks publishers)."""
        for message in batch:
            self._impl.basic_publish(
                message.exchange, message.routing_key, message.body, properties(message)
            )
            self._unconfirmed.add(self._next_tag)
            self._next_tag += 1
        # `timeout` runs from the last confirm: a big batch confirmed slowly but steadily
        # (quorum queues on a loaded machine) is not a dead connection
        deadline = time.monotonic() + timeout
        left = len(self._unconfirmed)
        while self._unconfirmed:
            if len(self._unconfirmed) < left:
                left = len(self._unconfirmed)
                deadline = time.monotonic() + timeout
            if give_up():
                raise MessagingError(
                    f"the broker blocks publishers; {len(self._unconfirmed)} messages unconfirmed"
                )
            if time.monotonic() > deadline:
                raise Unconfirmed(
                    f"the broker confirmed no more of {len(self._unconfirmed)} messages"
                    f" within {timeout:g}s"
                )
            # Confirms arrive on the async channel and do not end process_data_events'
            # wait early, so wait in small steps.
            self._connection.process_data_events(time_limit=0.002)
        if self._nacked:
            refused, self._nacked = self._nacked, 0
            raise Nacked(f"the broker refused {refused} of {len(batch)} messages")
