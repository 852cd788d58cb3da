"""The messages a bus hands to handlers and takes for publishing: plain data, no pika."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.topology import REASON_HEADER


@dataclass(frozen=True)
class Delivery:
    """A message as a handler sees it."""

    body: bytes
    exchange: str
    routing_key: str
    headers: dict[str, Any]
    reply_to: str | None
    correlation_id: str | None
    message_id: str | None
    user_id: str | None
    redelivered: bool
    queue: str
    tag: int
    generation: int  # the connection it came on: acks for an older one are dropped


Handler = Callable[[Delivery], None]


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Outbound:
    """One message of a batch for `publish_batch`, stamped when it was made."""

    exchange: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    persistent: bool = True
    user_id: str | None = None  # must be the bus's own user: RabbitMQ validates it
    timestamp: int = field(default_factory=_now)


def dead_letter_headers(delivery: Delivery, reason: str) -> dict[str, Any]:
    """A dead letter's headers: the original ones, the reason and where it came from.

    RabbitMQ's own dead-lettering (reject without requeue) records only "rejected";
    republishing with these lets the reason travel with the message.
    """
    headers = dict(delivery.headers)
    headers.update(
        {
            REASON_HEADER: reason[:4096],
            "x-kube-queue": delivery.queue,
            "x-kube-exchange": delivery.exchange,
            "x-kube-routing-key": delivery.routing_key,
        }
    )
    return headers
