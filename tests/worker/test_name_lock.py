"""One worker per node name, held by the broker in one step (worker/claim.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import topology
from shared.bus import StubBus
from shared.errors import ResourceLocked
from tests.worker.conftest import stub_worker
from worker.runtime.mock import MockRuntime
from worker.service import Worker


@pytest.fixture
def worker() -> Iterator[tuple[Worker, StubBus]]:
    worker, bus = stub_worker(MockRuntime("n1"))
    worker.setup()
    yield worker, bus
    worker.close()


def test_a_worker_holds_its_name_with_an_exclusive_queue_then_consumes(
    worker: tuple[Worker, StubBus],
) -> None:
    _, bus = worker
    bus.connect()
    locks = [q for t in bus.topologies for q in t.queues if q.exclusive]
    assert [q.name for q in locks] == [topology.node_lock_queue("n1")]
    assert topology.node_queue("n1") in bus.consumers


def test_a_worker_that_loses_the_race_for_its_name_is_refused_naming_the_rule(
    worker: tuple[Worker, StubBus],
) -> None:
    # given another worker that took the name at the same instant: no consumer counted yet
    _, bus = worker
    bus.locked.add(topology.node_lock_queue("n1"))
    # when this one connects, then the broker's refusal becomes the friendly one
    with pytest.raises(ResourceLocked, match="another worker named n1 is running"):
        bus.connect()
    assert topology.node_queue("n1") not in bus.consumers


def test_after_a_reconnect_the_worker_consumes_at_once_while_its_old_lock_lingers(
    worker: tuple[Worker, StubBus],
) -> None:
    # given a worker whose old connection (and lock) the broker still holds after a cut
    _, bus = worker
    bus.connect()
    bus.locked.add(topology.node_lock_queue("n1"))
    # when it reconnects, then it consumes its node queue at once: waiting for the broker
    # to drop the old connection would delay fencing after a partition heals
    bus.reconnect()
    assert bus.connected
    assert topology.node_queue("n1") in bus.consumers
