"""Acknowledging many deliveries in one socket write."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel


def ack_frames(tags: Sequence[int], unacked: Collection[int]) -> list[tuple[int, bool]]:
    """The (tag, multiple) acks that settle `tags` (sorted, all unsettled) and nothing else.

    One `multiple` ack covers the lowest tags while every unsettled delivery up to it is
    among them (the usual case); any others are acked one by one.
    """
    wanted = set(tags)
    below = min((tag for tag in unacked if tag not in wanted), default=None)
    covered = [tag for tag in tags if below is None or tag < below]
    frames = [(covered[-1], True)] if covered else []
    return frames + [(tag, False) for tag in tags[len(covered) :]]


def write_acks(channel: BlockingChannel, frames: Sequence[tuple[int, bool]]) -> None:
    """Send the acks in one write: all but the last are buffered on pika's async channel,
    the last one, sent on the blocking channel, flushes them all."""
    impl: Any = channel._impl  # pika's async channel: frames are buffered, not flushed
    for tag, multiple in frames[:-1]:
        impl.basic_ack(delivery_tag=tag, multiple=multiple)
    tag, multiple = frames[-1]
    channel.basic_ack(tag, multiple=multiple)  # writes what was buffered, at once
