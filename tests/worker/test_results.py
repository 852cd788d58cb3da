"""The worker's results: updates and heartbeats go out in order, confirmed, before acks."""

from __future__ import annotations

from collections.abc import Iterator

import pika.exceptions
import pytest

from shared.bus import Delivery
from shared.settings import Settings
from tests.support.recording_bus import RecordingBus, dispatch
from tests.support.waiting import wait_for
from worker.runtime.mock import MockRuntime
from worker.service import Worker, WorkerConfig
from worker.stats import Capacity


@pytest.fixture
def worker() -> Iterator[tuple[Worker, RecordingBus]]:
    bus = RecordingBus()
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    worker = Worker(Settings(), config, MockRuntime("n1"), bus=bus)  # type: ignore[arg-type]
    yield worker, bus
    worker.close()


def started(worker: Worker, bus: RecordingBus, *deliveries: Delivery) -> None:
    """Dispatch, and hand the starts back to the bus thread once the engine made them."""
    for delivery in deliveries:
        worker.on_dispatch(delivery)
    wait_for(lambda: len(bus.callbacks) == len(deliveries), what="the starts")
    bus.run_callbacks()


def test_dispatches_are_acked_after_their_updates_and_heartbeats_follow_them(
    worker: tuple[Worker, RecordingBus],
) -> None:
    # given a worker that started two tasks, then made a heartbeat
    w, bus = worker
    started(w, bus, dispatch(1, "t1"), dispatch(2, "t2"))
    w.send_heartbeat()
    # then nothing went out yet, nor was acked
    assert bus.log == []
    # when the batch is flushed
    w.flush()
    # then both updates, then the heartbeat were confirmed as one stream, then both acked
    assert bus.log == [
        ("confirmed", ("update", "running")),
        ("confirmed", ("update", "running")),
        ("confirmed", ("heartbeat", None)),
        ("ack", 1),
        ("ack", 2),
    ]


def test_results_the_broker_did_not_take_go_out_again_and_nothing_is_acked_before(
    worker: tuple[Worker, RecordingBus],
) -> None:
    # given a worker that started a task, and a connection that fails the next publish
    w, bus = worker
    started(w, bus, dispatch(1, "t1"))
    bus.fail_next = True
    # when the batch is flushed, then the error reaches the bus (it reconnects) unacked
    with pytest.raises(pika.exceptions.StreamLostError):
        w.flush()
    assert bus.log == []
    # and the next flush (after reconnecting) sends the update before the heartbeat
    w.send_heartbeat()
    w.flush()
    assert bus.log == [
        ("confirmed", ("update", "running")),
        ("confirmed", ("heartbeat", None)),
        ("ack", 1),
    ]


def test_what_is_queued_while_a_batch_is_confirmed_goes_out_at_once(
    worker: tuple[Worker, RecordingBus],
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
    assert bus.log == [
        ("confirmed", ("update", "running")),
        ("ack", 1),
        ("confirmed", ("update", "running")),
        ("ack", 2),
    ]
