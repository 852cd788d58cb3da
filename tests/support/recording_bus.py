"""A stand-in for the worker's Bus that runs callbacks when told and logs what it confirms
and acks, in order; and the dispatch deliveries a node queue would bring."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pika.exceptions

from shared import topology
from shared.bus import Bus, Delivery
from shared.codec import encode
from shared.confirms import Outbound
from shared.messages import RunTask, StopTask
from shared.models import TaskSpec


class RecordingBus:
    """Stands in for the Bus: runs thread-safe callbacks when told, logs what is confirmed
    and acked, in order, and can fail the next publish as a lost connection does."""

    message = staticmethod(Bus.message)
    user = "guest"
    stopping = False

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.log: list[tuple[str, Any]] = []
        self.updates: list[dict[str, Any]] = []  # every confirmed update, whole
        self.heartbeats: list[dict[str, Any]] = []  # every confirmed heartbeat, whole
        self.fail_next = False
        self.while_confirming: list[Callable[[], None]] = []  # run during the next publish

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        self.callbacks.append(fn)

    def run_callbacks(self) -> None:
        while self.callbacks:
            self.callbacks.pop(0)()

    def publish_batch(self, batch: list[Outbound]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise pika.exceptions.StreamLostError("connection lost")
        for message in batch:
            assert message.properties.user_id == "guest"
            body = json.loads(message.body)
            self.log.append(("confirmed", (body["kind"], body.get("state"))))
            if body["kind"] == "update":
                self.updates.append(body)
            elif body["kind"] == "heartbeat":
                self.heartbeats.append(body)
        while self.while_confirming:  # callbacks run while confirms are awaited
            self.while_confirming.pop(0)()

    def ack_batch(self, deliveries: list[Delivery]) -> None:
        self.log.extend(("ack", delivery.tag) for delivery in deliveries)

    def acked(self) -> list[int]:
        return [tag for what, tag in self.log if what == "ack"]

    def stop(self) -> None:
        pass

    # setup() wires these; the tests drive the worker by hand instead
    def declare(self, *args: object) -> None:
        pass

    def consume(self, *args: object) -> None:
        pass

    def every(self, *args: object) -> None:
        pass

    def on_connect(self, *args: object) -> None:
        pass

    def after_events(self, *args: object) -> None:
        pass


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
