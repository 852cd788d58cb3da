"""A stream reader that lost its broker reads on after a failover refuses it for a while."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika.exceptions
import pytest

from shared import rpc
from shared.errors import MessagingError
from shared.rpc import Message, Subscription


class FakeChannel:
    """Stands for a pika channel on a stream: delivers `bodies` (offsets from `first`), then
    raises `then` when read again."""

    def __init__(self, bodies: list[bytes], first: int = 0, then: Exception | None = None):
        self.bodies = bodies
        self.first = first
        self.then = then
        self.consumed_from: list[Any] = []
        self.connection = self
        self.is_open = True
        self._on_message: Callable[..., None] | None = None

    def basic_consume(self, queue: str, on_message: Any, **kwargs: Any) -> None:
        self.consumed_from.append(kwargs["arguments"]["x-stream-offset"])
        self._on_message = on_message

    def process_data_events(self, time_limit: float = 0) -> None:
        if self.bodies:
            assert self._on_message is not None
            for tag, body in enumerate(self.bodies, start=1):
                method = pika.spec.Basic.Deliver(delivery_tag=tag, routing_key="task.running")
                props = pika.BasicProperties(headers={"x-stream-offset": self.first + tag - 1})
                self._on_message(self, method, props, body)
            self.bodies = []
        elif self.then is not None:
            raise self.then

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        pass


def no_replica() -> pika.exceptions.ChannelClosedByBroker:
    return pika.exceptions.ChannelClosedByBroker(
        406,
        "PRECONDITION_FAILED - stream queue 'kube.events.stream' in vhost 'v' does not"
        " have a replica on the local node",
    )


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(rpc.time, "sleep", sleep)
    monkeypatch.setattr(rpc.time, "monotonic", lambda: clock[0])
    return slept


def test_a_reader_refused_during_a_failover_retries_and_reads_on_after_the_last_event(
    waits: list[float],
) -> None:
    # given a reader that got events 0 and 1, then lost its broker
    lost = pika.exceptions.StreamLostError("node killed")
    first = FakeChannel([b"e0", b"e1"], then=lost)
    later = FakeChannel([b"e2"], first=2)
    answers: list[Any] = [no_replica(), no_replica(), later]

    def reconnect() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    reader = Subscription(
        first,
        "kube.events.stream",
        temporary=False,
        arguments={"x-stream-offset": "next"},
        reconnect=reconnect,
    )
    # when it reads on while the other nodes refuse twice, then it waits, and goes on
    # after the last event it gave
    read = [next(reader) for _ in range(4)]
    assert [m.body for m in read if isinstance(m, Message)] == [b"e0", b"e1", b"e2"]
    assert waits == [0.5, 1.0]
    assert later.consumed_from == [2]


def test_a_reader_gives_up_after_a_minute_of_refusals(waits: list[float]) -> None:
    def reconnect() -> Any:
        raise no_replica()

    reader = Subscription(
        FakeChannel([], then=pika.exceptions.StreamLostError("gone")),
        "kube.events.stream",
        temporary=False,
        arguments={"x-stream-offset": "next"},
        reconnect=reconnect,
    )
    with pytest.raises(MessagingError, match=r"cannot read kube.events.stream again within 60s"):
        next(reader)
    assert sum(waits) == pytest.approx(rpc.RESUME_FOR)
    assert max(waits) <= rpc.RESUME_MAX_DELAY
