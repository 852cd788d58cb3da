"""The messages a bus hands to handlers and takes for publishing: plain data, no pika."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.models import MAX_BODY_BYTES
from shared.topology import DEAD_LETTER, REASON_HEADER


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
    headers: dict[str, Any] | None = None


DEAD_LETTER_HEADER_BYTES = 32 * 1024
"""What the original headers may take in a dead letter: its headers must fit one frame
(RabbitMQ's frame_max, 128 KiB by default), or the broker closes the connection."""


def dead_letter_headers(delivery: Delivery, reason: str) -> dict[str, Any]:
    """A dead letter's headers: the original ones, the reason and where it came from.

    RabbitMQ's own dead-lettering (reject without requeue) records only "rejected";
    republishing with these lets the reason travel with the message. When the original
    headers take more than DEAD_LETTER_HEADER_BYTES, the largest are left out until the
    rest fit (`x-kube-headers-dropped` names them), so the dead letter always fits the
    broker's frame and keeps the small headers that identify it.
    """
    headers = dict(delivery.headers)
    if table_size(headers) > DEAD_LETTER_HEADER_BYTES:
        dropped: list[str] = []
        for key in sorted(headers, key=lambda k: _value_size(headers[k]), reverse=True):
            if table_size(headers) <= DEAD_LETTER_HEADER_BYTES - 4096:
                break
            del headers[key]
            dropped.append(str(key)[:100])
        headers["x-kube-headers-dropped"] = ", ".join(dropped)[:1024]
    headers.update(
        {
            REASON_HEADER: reason[:4096],
            "x-kube-queue": delivery.queue,
            "x-kube-exchange": delivery.exchange,
            "x-kube-routing-key": delivery.routing_key[:255],
        }
    )
    return headers


def dead_letter_copy(delivery: Delivery, reason: str) -> Outbound:
    """The dead letter of a delivery as a message for publish_batch (ack the delivery once
    it is confirmed). A body over the wire limit is cut to it (`x-kube-body-trimmed`
    gives its length)."""
    headers = dead_letter_headers(delivery, reason)
    body = delivery.body
    if len(body) > MAX_BODY_BYTES:
        headers["x-kube-body-trimmed"] = len(body)
        body = body[:MAX_BODY_BYTES]
    return Outbound(DEAD_LETTER, delivery.routing_key[:255], body, headers=headers)


def table_size(table: dict[str, Any]) -> int:
    """About how many bytes an AMQP field table takes on the wire (an upper bound for
    strings, numbers and flat lists; nested values are counted by their text)."""
    size = 4
    for key, value in table.items():
        size += 1 + len(str(key).encode()) + 5 + _value_size(value)
    return size


def _value_size(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return table_size(value)
    if isinstance(value, list | tuple):
        return sum(5 + _value_size(item) for item in value)
    return len(str(value).encode())
