"""kube's message bus: the `MessageBus` Protocol, its pika `Bus` and the `StubBus`.

message.py     Delivery, Outbound (plain data), Handler, dead-letter headers
protocol.py    MessageBus: what the manager and the worker are typed against
pika_bus.py    Bus: one pika connection, reconnecting by itself
connection.py  pika connection parameters; pika's errors translated into ours
declare.py     declaring a topology, as far as the broker user may
consume.py     consumers, and how a handler's outcome settles its delivery
confirms.py    publishing a batch with its confirms awaited as a stream
acks.py        acknowledging many deliveries in one write
timers.py      timers run on the bus thread
stub.py        StubBus: in memory, deterministic, for tests and dry runs
"""

from __future__ import annotations

from shared.bus.message import Delivery, Handler, Outbound, dead_letter_copy
from shared.bus.pika_bus import Bus
from shared.bus.protocol import MessageBus
from shared.bus.stub import Published, StubBus

__all__ = [
    "Bus",
    "Delivery",
    "Handler",
    "MessageBus",
    "Outbound",
    "Published",
    "StubBus",
    "dead_letter_copy",
]
