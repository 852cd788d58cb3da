"""A manager whose database was replaced (a new cluster id) reusing a task id: the old
cluster's container of that name is refused, never adopted (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.bus import StubBus
from shared.codec import encode
from shared.messages import ClusterInfo, RunTask, StopTask
from shared.models import TaskSpec
from tests.support.dispatches import delivery, sent
from tests.support.waiting import wait_for
from tests.worker.conftest import reported, stub_worker
from worker.runtime.mock import MockRuntime
from worker.service import Worker

OLD, NEW = "aaaa0000aaaa0000", "bbbb0000bbbb0000"


@pytest.fixture
def worker() -> Iterator[tuple[Worker, StubBus, MockRuntime]]:
    runtime = MockRuntime("n1")
    worker, bus = stub_worker(runtime)
    yield worker, bus, runtime
    worker.close()


def run(worker: Worker, bus: StubBus, tag: int, cluster: str) -> None:
    spec = TaskSpec(name="t1", image="b", command=("sleep", "60"))
    body = encode(RunTask(task_id="t1", attempt=1, spec=spec, cluster=cluster))
    updates = len(sent(bus, "update"))
    worker.on_dispatch(delivery(tag, body))
    reported(worker, bus, updates + 1)


def test_a_reused_task_id_whose_container_the_old_cluster_holds_fails_and_is_left_alone(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given a task running in the old cluster
    w, bus, runtime = worker
    run(w, bus, 1, OLD)
    assert sent(bus, "update")[-1]["state"] == "running"
    # when the manager, its database replaced, dispatches the same task id and attempt
    run(w, bus, 2, NEW)
    # then the attempt fails, saying why, instead of adopting the old container
    last = sent(bus, "update")[-1]
    assert last["state"] == "failed", last
    assert "belongs to another kube cluster (aaaa0000aaaa0000)" in last["error"]
    assert "database was replaced" in last["error"]
    # and the old container runs on, untouched and no longer held by this worker
    runtime.join(OLD)
    assert [c.status.value for c in runtime.list()] == ["running"]
    assert w.runners.alive == []


def test_a_stop_that_comes_before_the_worker_knows_its_cluster_waits_for_it(
    worker: tuple[Worker, StubBus, MockRuntime],
) -> None:
    # given a worker that ran a task in its cluster, then restarted: told no cluster yet
    w, bus, runtime = worker
    run(w, bus, 1, OLD)
    w.close()
    again, bus = stub_worker(runtime)
    try:
        # when the task's stop arrives before the manager has told it its cluster
        body = encode(StopTask(task_id="t1", attempt=1))
        again.on_dispatch(delivery(2, body))
        # then nothing is removed yet: the container cannot be told from another cluster's
        runtime.join(OLD)
        assert [c.status.value for c in runtime.list()] == ["running"]
        # and once the manager says which cluster, the stop is applied
        again.on_dispatch(delivery(3, encode(ClusterInfo(cluster=OLD))))
        wait_for(lambda: runtime.list() == [], what="the container removed")
    finally:
        again.close()
