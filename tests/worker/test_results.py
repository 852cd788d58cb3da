"""The worker's results: updates and heartbeats go out in order, confirmed, before acks."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from shared import topology
from shared.bus import Delivery, StubBus
from shared.codec import encode
from shared.errors import ConnectionLost, MessagingError
from shared.messages import MAX_PORTS, RunTask
from shared.models import TaskSpec
from shared.settings import Settings
from tests.support.waiting import wait_for
from worker.config import WorkerConfig
from worker.files import FileMount
from worker.runtime.base import ContainerInfo
from worker.runtime.mock import MockRuntime
from worker.service import Worker
from worker.stats import Capacity


def confirmed(bus: StubBus) -> list[tuple[str, Any]]:
    """What the bus confirmed and acked, in order: ("confirmed", (kind, state)), ("ack", tag)."""
    out: list[tuple[str, Any]] = []
    for kind, item in bus.log:
        if kind == "publish":
            assert item.user_id == "guest"
            body = json.loads(item.body)
            out.append(("confirmed", (body["kind"], body.get("state"))))
        else:
            out.append((kind, item.tag))
    return out


@pytest.fixture
def worker() -> Iterator[tuple[Worker, StubBus]]:
    bus = StubBus(user="guest")
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    worker = Worker(Settings(), config, MockRuntime("n1"), bus=bus)
    yield worker, bus
    worker.close()


def dispatch(tag: int, task_id: str) -> Delivery:
    body = encode(RunTask(task_id=task_id, attempt=1, spec=TaskSpec(name=task_id, image="b")))
    return Delivery(
        body=body,
        exchange=topology.DISPATCH,
        routing_key="n1",
        headers={},
        reply_to=None,
        correlation_id=None,
        message_id=None,
        user_id=None,
        redelivered=False,
        queue=topology.node_queue("n1"),
        tag=tag,
        generation=1,
    )


def started(worker: Worker, bus: StubBus, *deliveries: Delivery) -> None:
    """Dispatch, and hand the starts back to the bus thread once the engine made them."""
    for delivery in deliveries:
        worker.on_dispatch(delivery)
    wait_for(lambda: len(bus.callbacks) == len(deliveries), what="the starts")
    bus.run_callbacks()


def test_dispatches_are_acked_after_their_updates_and_heartbeats_follow_them(
    worker: tuple[Worker, StubBus],
) -> None:
    # given a worker that started two tasks, then made a heartbeat
    w, bus = worker
    started(w, bus, dispatch(1, "t1"), dispatch(2, "t2"))
    w.send_heartbeat()
    # then nothing went out yet, nor was acked
    assert confirmed(bus) == []
    # when the batch is flushed
    w.flush()
    # then both updates, then the heartbeat were confirmed as one stream, then both acked
    assert confirmed(bus) == [
        ("confirmed", ("update", "running")),
        ("confirmed", ("update", "running")),
        ("confirmed", ("heartbeat", None)),
        ("ack", 1),
        ("ack", 2),
    ]


def test_results_the_broker_did_not_take_go_out_again_and_nothing_is_acked_before(
    worker: tuple[Worker, StubBus],
) -> None:
    # given a worker that started a task, and a connection that fails the next publish
    w, bus = worker
    started(w, bus, dispatch(1, "t1"))
    bus.fail_next = ConnectionLost("connection lost")
    # when the batch is flushed, then the error reaches the bus (it reconnects) unacked
    with pytest.raises(ConnectionLost):
        w.flush()
    assert confirmed(bus) == []
    # and the next flush (after reconnecting) sends the update before the heartbeat
    w.send_heartbeat()
    w.flush()
    assert confirmed(bus) == [
        ("confirmed", ("update", "running")),
        ("confirmed", ("heartbeat", None)),
        ("ack", 1),
    ]


def test_a_refused_batch_is_kept_and_sent_again_on_the_next_flush(
    worker: tuple[Worker, StubBus],
) -> None:
    # given a worker that started a task, and a broker that refuses the next batch
    w, bus = worker
    started(w, bus, dispatch(1, "t1"))
    bus.fail_next = MessagingError("the broker refused 1 of 1 messages")
    # when the batch is flushed, then the flush returns (the connection is fine), unacked
    w.flush()
    assert confirmed(bus) == []
    # and the next flush sends it, then acks
    w.flush()
    assert confirmed(bus) == [("confirmed", ("update", "running")), ("ack", 1)]


def test_a_broker_that_refuses_again_and_again_is_logged_once_without_a_traceback(
    worker: tuple[Worker, StubBus], caplog: pytest.LogCaptureFixture
) -> None:
    # given a broker in a memory alarm, refusing every try (issue 13: a traceback each 0.5 s)
    w, bus = worker
    started(w, bus, dispatch(1, "t1"))
    with caplog.at_level(logging.WARNING, logger="worker.service"):
        for _ in range(5):
            bus.fail_next = MessagingError("the broker refused 1 of 1 messages")
            w.flush()
        # when it takes them again
        w.flush()
    # then one line said it refused, one that it takes them again, and no traceback
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.service"]
    assert [line for line in lines if "refused results" in line] == [
        "worker n1: the broker refused results (the broker refused 1 of 1 messages);"
        " keeping them and trying again until it takes them"
    ]
    assert [line for line in lines if "takes results again" in line] == [
        "worker n1: the broker takes results again"
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_what_is_queued_while_a_batch_is_confirmed_goes_out_at_once(
    worker: tuple[Worker, StubBus],
) -> None:
    # given a worker flushing a started task while the next start comes back from the engine
    w, bus = worker
    started(w, bus, dispatch(1, "t1"))
    w.on_dispatch(dispatch(2, "t2"))
    wait_for(lambda: bus.callbacks, what="the second start")
    bus.while_confirming.append(bus.run_callbacks)
    # when the batch is flushed
    w.flush()
    # then the second start was reported and acked in the same flush, as a batch of its own
    assert confirmed(bus) == [
        ("confirmed", ("update", "running")),
        ("ack", 1),
        ("confirmed", ("update", "running")),
        ("ack", 2),
    ]


class _ManyPorts(MockRuntime):
    """An engine that reports more host ports than an update carries."""

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        info = super().start(task_id, attempt, spec, files)
        many = {str(port): port for port in range(1, MAX_PORTS + 2)}
        return dataclasses.replace(info, host_ports=many)


def test_a_report_an_update_cannot_carry_is_sent_as_a_failure_and_its_dispatch_acked() -> None:
    # given a worker whose engine reports 257 host ports for a container
    bus = StubBus(user="guest")
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    w = Worker(Settings(), config, _ManyPorts("n1"), bus=bus)
    try:
        # when it starts the task and flushes its results
        started(w, bus, dispatch(1, "t1"))
        w.flush()

        # then the attempt is reported failed, naming why, and the dispatch is acked
        assert confirmed(bus) == [("confirmed", ("update", "failed")), ("ack", 1)]
        body = json.loads(bus.log[0][1].body)
        assert body["error"].startswith("the worker cannot report this attempt: host_ports:")
    finally:
        w.close()
