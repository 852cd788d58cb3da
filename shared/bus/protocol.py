"""What the manager and the worker need of a message bus, as a Protocol.

`Bus` (pika, shared/bus/pika_bus.py) is the real one; `StubBus` (shared/bus/stub.py) an
in-memory stand-in for tests. Errors are ours (shared.errors): `ConnectionLost` when the
connection is gone, `UnroutableError` for a returned publish, `MessagingError` otherwise.

Threading: everything but `call_threadsafe` and `stop` runs on the bus thread, the one in
`run()` (handlers, timers and hooks are called there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from shared.bus.message import Delivery, Handler, Outbound
from shared.topology import Topology


class MessageBus(Protocol):
    """Declare, consume, publish with confirms, ack, reject; timers and hooks; run."""

    # -- set-up, before or during run()

    def declare(self, topology: Topology, again: bool = True) -> None:
        """Declare now if connected, and (unless not `again`) after every reconnect."""

    def consume(self, queue: str, handler: Handler, requeue_on_error: bool = True) -> None:
        """Call handler for each message of queue; the handler acks or rejects it."""

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread every interval seconds while connected."""

    def after_events(self, fn: Callable[[], None]) -> None:
        """Run fn each time the deliveries that had arrived were handled."""

    def on_connect(self, fn: Callable[[], None]) -> None:
        """Run fn after each (re)connection, once declared."""

    def on_blocked(self, fn: Callable[[bool], None]) -> None:
        """Run fn(blocked) when the broker blocks publishers (a resource alarm) and when
        it unblocks them."""

    @property
    def connected(self) -> bool:
        """Whether the bus holds a connection now."""
        ...

    @property
    def blocked(self) -> bool:
        """Whether the broker blocks this connection's publishes now."""
        ...

    # -- on the bus thread

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
        persistent: bool = True,
        mandatory: bool = False,
        user_id: str | None = None,
        expiration: float | None = None,
    ) -> None:
        """Publish one message and wait for its confirm. A message with an expiration
        (seconds) is dropped by the broker once it waited that long, by the broker's clock."""

    def message(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        correlation_id: str | None = None,
        persistent: bool = True,
        user_id: str | None = None,
    ) -> Outbound:
        """A message for publish_batch."""

    def publish_batch(self, batch: Sequence[Outbound]) -> None:
        """Publish many messages and wait once for all their confirms."""

    def reply(self, delivery: Delivery, body: bytes) -> None:
        """Answer a request that carried reply_to."""

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message to the dead-letter exchange with its reason, then ack it."""

    def queue_depth(self, queue: str) -> int:
        """How many messages wait in a queue, not yet delivered to any consumer."""
        ...

    def peek(self, queue: str) -> bytes | None:
        """The body of the message at the head of a queue, left there (None: empty)."""
        ...

    def consumers_of(self, queue: str) -> int:
        """How many consumers a queue has now."""
        ...

    def delete_queue(self, queue: str) -> None:
        """Delete a queue with whatever it holds, and stop declaring it."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge one delivery."""

    def ack_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge many deliveries at once."""

    def reject(self, delivery: Delivery, requeue: bool = False) -> None:
        """Reject a delivery, requeued or not."""

    # -- from any thread

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        """Run fn on the bus thread soon."""

    def stop(self) -> None:
        """Ask run() to return."""

    @property
    def user(self) -> str:
        """The broker user this bus logs in as (the one value accepted in user_id)."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether stop() or close() was called."""
        ...

    # -- the loop

    def connect(self) -> None:
        """Connect and set everything up now (ResourceLocked: a lock queue is held)."""

    def run(self) -> None:
        """Serve until stop(): consume, fire timers, run callbacks; reconnect on failure."""

    def close(self) -> None:
        """Stop and close."""
