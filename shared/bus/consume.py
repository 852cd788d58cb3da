"""Consumption: what a consumer is, and how a handler's outcome settles its delivery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import metrics
from shared.bus.connection import LOST
from shared.bus.message import Delivery, Handler
from shared.errors import KubeError

log = logging.getLogger("shared.bus")


@dataclass
class Consumer:
    queue: str
    handler: Handler
    requeue_on_error: bool


def delivery_from(method: Any, props: Any, body: bytes, queue: str, generation: int) -> Delivery:
    """A Delivery from pika's deliver method and properties."""
    return Delivery(
        body=body,
        exchange=method.exchange,
        routing_key=method.routing_key,
        headers=dict(props.headers or {}),
        reply_to=props.reply_to,
        correlation_id=props.correlation_id,
        message_id=props.message_id,
        user_id=props.user_id,
        redelivered=bool(method.redelivered),
        queue=queue,
        tag=method.delivery_tag,
        generation=generation,
    )


def handle(
    name: str,
    consumer: Consumer,
    delivery: Delivery,
    reject: Callable[[Delivery, bool], None],
) -> None:
    """Run the handler. One that raises gets its message rejected, requeued when the
    consumer says so (a quorum queue's delivery limit then dead-letters a message that
    always fails); a lost connection goes up to the bus loop, which reconnects."""
    try:
        consumer.handler(delivery)
        metrics.consumed(consumer.queue, "handled")
    except LOST:
        raise
    except KubeError as exc:  # a condition kube knows (a store gone...): one line
        log.warning(
            "%s: handler for %s failed on %s: %s; rejecting (requeue=%s)",
            name,
            consumer.queue,
            delivery.routing_key,
            exc,
            consumer.requeue_on_error,
        )
        metrics.consumed(consumer.queue, "failed")
        reject(delivery, consumer.requeue_on_error)
    except Exception:
        log.exception(
            "%s: handler for %s failed on %s; rejecting (requeue=%s)",
            name,
            consumer.queue,
            delivery.routing_key,
            consumer.requeue_on_error,
        )
        metrics.consumed(consumer.queue, "failed")
        reject(delivery, consumer.requeue_on_error)
