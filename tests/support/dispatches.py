"""Dispatches as a node queue brings them to a worker, and what a StubBus saw the worker
send, decoded."""

from __future__ import annotations

import json
from typing import Any

from shared import topology
from shared.bus import Delivery, StubBus
from shared.codec import encode
from shared.messages import RunTask, StopTask
from shared.models import TaskSpec


def delivery(tag: int, body: bytes, node: str = "n1") -> Delivery:
    """A delivery from a node queue, as the bus hands it to the worker."""
    return Delivery(
        body=body,
        exchange=topology.DISPATCH,
        routing_key=node,
        headers={},
        reply_to=None,
        correlation_id=None,
        message_id=None,
        user_id=None,
        redelivered=False,
        queue=topology.node_queue(node),
        tag=tag,
        generation=1,
    )


def dispatch(tag: int, task_id: str, spec: TaskSpec | None = None, attempt: int = 1) -> Delivery:
    """A RunTask delivery (on image "b" unless a spec is given)."""
    spec = spec or TaskSpec(name=task_id, image="b")
    return delivery(tag, encode(RunTask(task_id=task_id, attempt=attempt, spec=spec)))


def stop(tag: int, task_id: str, attempt: int = 1) -> Delivery:
    """A StopTask delivery."""
    return delivery(tag, encode(StopTask(task_id=task_id, attempt=attempt)))


def sent(bus: StubBus, kind: str) -> list[dict[str, Any]]:
    """The worker's confirmed results of one kind ("update", "heartbeat"), decoded, in order."""
    bodies = [json.loads(message.body) for message in bus.published]
    return [body for body in bodies if body.get("kind") == kind]


def acked(bus: StubBus) -> list[int]:
    """The tags of the deliveries acked, in order."""
    return [delivery.tag for delivery in bus.acked]
