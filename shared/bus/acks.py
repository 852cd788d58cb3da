"""Acknowledging many deliveries in one socket write."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel


def ack_frames(tags: Sequence[int], unacked: Collection[int]) -> list[tuple[int, bool]]:
    """The (tag, multiple) acks that settle `tags` (sorted, all unsettled) and nothing else.

    Each is acked on its own, never with `multiple`: a multiple ack settles every tag up to
    it at the broker, including deliveries pika has received but not yet handed to their
    consumer (they are in no set of ours), which were then acked unhandled and lost (a
    manager took 51 submits and recorded 13). The frames still go in one socket write.
    """
    return [(tag, False) for tag in tags]


def write_acks(channel: BlockingChannel, frames: Sequence[tuple[int, bool]]) -> None:
    """Send the acks in one write: all but the last are buffered on pika's async channel,
    the last one, sent on the blocking channel, flushes them all."""
    impl: Any = channel._impl  # pika's async channel: frames are buffered, not flushed
    for tag, multiple in frames[:-1]:
        impl.basic_ack(delivery_tag=tag, multiple=multiple)
    tag, multiple = frames[-1]
    channel.basic_ack(tag, multiple=multiple)  # writes what was buffered, at once
