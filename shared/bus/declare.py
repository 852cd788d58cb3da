"""Declaring a topology on a pika connection, as far as the broker user may."""

from __future__ import annotations

import logging

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared.errors import MessagingError, ResourceLocked
from shared.topology import Binding, Exchange, Queue, Topology

log = logging.getLogger(__name__)

ACCESS_REFUSED = 403
RESOURCE_LOCKED = 405  # an exclusive queue another connection holds


def apply(connection: pika.BlockingConnection, topology: Topology, name: str) -> None:
    """Declare on a channel of its own. A declaration the broker user may not make
    (403: least-privilege users, deploy/rabbitmq) is checked passively instead: the
    broker's definitions must then hold it. A binding it may not make is skipped."""
    channel = connection.channel()
    items: list[Exchange | Queue | Binding] = [
        *topology.exchanges,
        *topology.queues,
        *topology.bindings,
    ]
    for item in items:
        try:
            declare(channel, item, passive=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == RESOURCE_LOCKED:
                name = item.name if isinstance(item, Queue) else str(item)
                raise ResourceLocked(f"queue {name} is held by another connection") from exc
            if exc.reply_code != ACCESS_REFUSED:
                raise
            if isinstance(item, Queue) and item.exclusive:  # a lock: one only its holder makes
                raise MessagingError(
                    f"{name}: the broker user may not declare queue {item.name} (it needs"
                    " configure permission on it: `python -m kube.definitions` grants it)"
                ) from exc
            log.info("%s: may not declare %s; expecting it from the broker", name, item)
            channel = connection.channel()
            declare(channel, item, passive=True)
    if channel.is_open:
        channel.close()


def declare(channel: BlockingChannel, item: Exchange | Queue | Binding, passive: bool) -> None:
    """Declare one thing; passive only checks that it exists (a binding cannot be checked)."""
    if isinstance(item, Exchange):
        channel.exchange_declare(item.name, item.type, durable=True, passive=passive)
    elif isinstance(item, Queue):
        channel.queue_declare(
            item.name,
            durable=item.durable,
            exclusive=item.exclusive,
            auto_delete=item.auto_delete,
            arguments=item.arguments or None,
            passive=passive,
        )
    elif not passive:
        channel.queue_bind(item.queue, item.exchange, item.routing_key)
