"""One AMQP connection that submits tasks with streamed confirms and watches kube.events.

kube's own Client asks the manager for each task and waits for the answer, which is
right for a person and far too slow to load a control plane. The driver publishes
TaskSpecs straight to `kube.commands` as any AMQP client may (persistent, with a
message id), keeping up to `window` publishes unconfirmed: confirms arrive as a stream
(often one `multiple` ack for many publishes) instead of one round trip per message.

It runs on pika's SelectConnection, in the calling thread: `open()`, `submit()` and
`wait()` each run the I/O loop until their condition holds or their time is up. Events
are timestamped (time.perf_counter) when they arrive; a submission when it is published.
Its queue on kube.events is bound in `open()`, before anything is submitted, so no
event of a submitted task can be missed.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.channel
import pika.frame
import pika.spec
from pika.adapters.select_connection import SelectConnection

from bench.report import progress
from shared import topology


@dataclass(frozen=True)
class Event:
    """A message from kube.events, as it arrived."""

    at: float  # time.perf_counter() on arrival
    key: str  # routing key: task.<state> or node.<what>
    body: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    """A task to publish, `due` seconds after submit() begins (0: at once)."""

    task_id: str
    body: bytes
    due: float = 0.0


def task_spec(task_id: str, image: str, command: Sequence[str], **fields: Any) -> Submission:
    """A TaskSpec body for task.submit, with the id making the publish idempotent."""
    spec = {"id": task_id, "name": task_id, "image": image, "command": list(command), **fields}
    return Submission(task_id, json.dumps(spec).encode())


class DriverError(RuntimeError):
    """The driver's connection failed or the broker refused a publish."""


class Driver:
    """Publishes submissions with many confirms in flight; records every event it sees."""

    def __init__(self, url: str, keys: Iterable[str], window: int = 1000) -> None:
        self.url = url
        self.keys = tuple(keys)
        self.window = window
        self.events: list[Event] = []
        self.listeners: list[Callable[[Event], None]] = []
        self.published: dict[str, float] = {}  # task id -> perf_counter at publish
        self.confirmed = 0
        self.nacked = 0
        self._connection: SelectConnection | None = None
        self._events_channel: pika.channel.Channel | None = None
        self._channel: pika.channel.Channel | None = None
        self._ready = False
        self._error: str | None = None
        self._outstanding: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._sequence = 0
        self._queue: collections.deque[Submission] = collections.deque()
        self._started = 0.0
        self._until: Callable[[], bool] = lambda: False
        self._deadline = 0.0
        self._pump_armed = False
        self._tick_handle: object | None = None
        self.last_confirm_at = 0.0
        self.on_progress: Callable[[], None] | None = None
        self._progress_at = 0.0

    # -- public ------------------------------------------------------------------------

    def open(self, timeout: float = 30.0) -> None:
        """Connect, bind an exclusive queue on kube.events to keys, enable confirms."""
        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": "kube-bench-driver"}
        self._connection = SelectConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        if not self._loop(lambda: self._ready, timeout):
            raise DriverError(self._error or f"not connected after {timeout:g}s")

    def submit(
        self, submissions: Iterable[Submission], until: Callable[[], bool], timeout: float
    ) -> bool:
        """Publish every submission when due, then serve until `until()`; False on timeout."""
        self._queue.extend(submissions)
        self._started = time.perf_counter()
        self._pump()
        return self._loop(until, timeout)

    def wait(self, until: Callable[[], bool], timeout: float) -> bool:
        """Serve events until `until()`; False on timeout."""
        return self._loop(until, timeout)

    @property
    def unconfirmed(self) -> int:
        return len(self._outstanding) + len(self._queue)

    def close(self) -> None:
        connection = self._connection
        self._connection = None
        if connection is not None and connection.is_open:
            connection.close()
            connection.ioloop.start()  # until _on_close stops it

    # -- the loop ----------------------------------------------------------------------

    def _loop(self, until: Callable[[], bool], timeout: float) -> bool:
        if self._error is not None:
            raise DriverError(self._error)
        if until():
            return True
        assert self._connection is not None
        self._until = until
        self._deadline = time.monotonic() + timeout
        self._tick_handle = self._connection.ioloop.call_later(0.1, self._tick)
        self._connection.ioloop.start()
        if self._tick_handle is not None:
            self._connection.ioloop.remove_timeout(self._tick_handle)
            self._tick_handle = None
        if self._error is not None:
            raise DriverError(self._error)
        return until()

    def _tick(self) -> None:
        self._tick_handle = None
        connection = self._connection
        if connection is None:
            return
        now = time.monotonic()
        if self.on_progress is not None and now - self._progress_at >= 2.0:
            self._progress_at = now
            self.on_progress()
        if self._until() or now > self._deadline:
            connection.ioloop.stop()
            return
        self._tick_handle = connection.ioloop.call_later(0.1, self._tick)

    def _stop(self, error: str) -> None:
        self._error = self._error or error
        if self._connection is not None:
            self._connection.ioloop.stop()

    # -- connection set-up -------------------------------------------------------------

    def _on_open(self, connection: pika.connection.Connection) -> None:
        connection.channel(on_open_callback=self._on_events_channel)

    def _on_open_error(self, connection: pika.connection.Connection, error: Exception) -> None:
        self._stop(f"cannot connect to {self.url}: {error!r}")

    def _on_close(self, connection: pika.connection.Connection, reason: Exception) -> None:
        if self._connection is not None:  # not closed by close()
            self._stop(f"connection closed: {reason!r}")
        else:
            connection.ioloop.stop()

    def _on_events_channel(self, channel: pika.channel.Channel) -> None:
        self._events_channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.basic_qos(prefetch_count=0)
        channel.queue_declare("", exclusive=True, auto_delete=True, callback=self._on_queue)

    def _on_queue(self, frame: pika.frame.Method) -> None:
        channel = self._events_channel
        assert channel is not None
        queue = frame.method.queue
        keys = list(self.keys)

        def bind_next(_: pika.frame.Method | None = None) -> None:
            if keys:
                channel.queue_bind(queue, topology.EVENTS, keys.pop(0), callback=bind_next)
            else:
                channel.basic_consume(queue, self._on_event, auto_ack=True)
                assert self._connection is not None
                self._connection.channel(on_open_callback=self._on_publish_channel)

        bind_next()

    def _on_publish_channel(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _: pika.frame.Method) -> None:
        self._ready = True
        assert self._connection is not None
        self._connection.ioloop.stop()

    def _on_channel_closed(self, channel: pika.channel.Channel, reason: Exception) -> None:
        if self._connection is not None:
            self._stop(f"channel closed: {reason!r}")

    # -- events ------------------------------------------------------------------------

    def _on_event(
        self,
        channel: pika.channel.Channel,
        method: pika.spec.Basic.Deliver,
        properties: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
        event = Event(time.perf_counter(), str(method.routing_key), json.loads(body))
        self.events.append(event)
        for listener in self.listeners:
            listener(event)
        if self._until() and self._connection is not None:
            self._connection.ioloop.stop()

    # -- publishing --------------------------------------------------------------------

    def _pump(self) -> None:
        """Publish what is due while fewer than `window` publishes await their confirm."""
        self._pump_armed = False
        channel = self._channel
        assert channel is not None and self._connection is not None
        now = time.perf_counter() - self._started
        properties_of = _properties
        while self._queue and len(self._outstanding) < self.window:
            head = self._queue[0]
            if head.due > now:
                if not self._pump_armed:
                    self._pump_armed = True
                    self._connection.ioloop.call_later(head.due - now, self._pump)
                return
            self._queue.popleft()
            self._sequence += 1
            self._outstanding[self._sequence] = head.task_id
            self.published[head.task_id] = time.perf_counter()
            channel.basic_publish(
                topology.COMMANDS, topology.SUBMIT_KEY, head.body, properties_of(head.task_id)
            )

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag = int(method.delivery_tag)
        if isinstance(method, pika.spec.Basic.Ack):
            done = self._settle(tag, bool(method.multiple))
            self.confirmed += done
        else:
            done = self._settle(tag, bool(method.multiple))
            self.nacked += done
            progress("broker nacked %d publishes (up to #%d)", done, tag)
        self.last_confirm_at = time.perf_counter()
        if self._queue and not self._pump_armed:
            self._pump()

    def _settle(self, tag: int, multiple: bool) -> int:
        if not multiple:
            return 1 if self._outstanding.pop(tag, None) is not None else 0
        settled = 0
        while self._outstanding:
            first = next(iter(self._outstanding))
            if first > tag:
                break
            self._outstanding.popitem(last=False)
            settled += 1
        return settled


def _properties(task_id: str) -> pika.spec.BasicProperties:
    return pika.spec.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=task_id,
    )


def first_by_task(
    events: Iterable[Event], key: str, accept: Callable[[Event], bool] | None = None
) -> dict[str, float]:
    """The arrival time of each task's first event with routing key `key` (and accepted)."""
    seen: dict[str, float] = {}
    for event in events:
        if event.key == key and (accept is None or accept(event)):
            seen.setdefault(str(event.body["id"]), event.at)
    return seen
