"""The worker's attempts, end to end within one worker: a stand-in bus, a real runtime.

Each runs on MockRuntime, and the stop-during-start test on the real engine too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from shared.bus import StubBus
from shared.models import TaskSpec
from shared.settings import Settings
from shared.specs import HealthCheck
from tests.support.dispatches import acked, dispatch, sent, stop
from tests.support.waiting import wait_for
from tests.worker.conftest import RuntimeKit
from worker.config import WorkerConfig
from worker.files import FileMount
from worker.runtime.base import ContainerExit, ContainerInfo, ExitWatch, Runtime
from worker.runtime.mock import EXEC_EXIT_CODE_ENV, MockRuntime
from worker.service import Worker
from worker.stats import Capacity

TIMEOUT = 60.0
CLUSTER = "c0ffee0011223344"


class GatedRuntime:
    """Wraps a runtime: starts wait until the gate opens (a slow pull); calls are logged."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.remove_gate = threading.Event()  # open unless a test closes it
        self.remove_gate.set()
        self.calls: list[str] = []

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        self.calls.append("start")
        assert self.gate.wait(TIMEOUT), "the test never opened the gate"
        info = self.inner.start(task_id, attempt, spec, files)
        self.calls.append("started")
        return info

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        assert self.remove_gate.wait(TIMEOUT), "the test never opened the removal gate"
        self.inner.remove(task_id, attempt, timeout=2)
        self.calls.append("removed")

    def list(self, task_id: str | None = None) -> list[ContainerInfo]:
        return self.inner.list(task_id)

    def join(self, cluster: str) -> None:
        self.inner.join(cluster)

    def watch_exits(
        self, on_exit: Callable[[ContainerExit], None], on_error: Callable[[Exception], None]
    ) -> ExitWatch:
        return self.inner.watch_exits(on_exit, on_error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_worker(runtime: Any, bus: StubBus) -> Worker:
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    worker = Worker(Settings(), config, runtime, bus=bus)  # type: ignore[arg-type]
    worker.setup()
    worker._join(CLUSTER)  # as the manager's ClusterInfo does: reconciles, watches exits
    wait_for(lambda: (bus.run_callbacks(), worker._inventory)[1], "the first reconciliation")
    return worker


def drive(worker: Worker, bus: StubBus, until: Callable[[], object], what: str) -> None:
    """Play the bus thread: hand results back, flush, until the condition holds."""

    def step() -> object:
        bus.run_callbacks()
        worker.flush()
        return until()

    wait_for(step, what, timeout=TIMEOUT)


def updates_of(bus: StubBus, task_id: str) -> list[tuple[str, str | None]]:
    return [(u["state"], u.get("health")) for u in sent(bus, "update") if u["task_id"] == task_id]


@pytest.fixture
def bus() -> StubBus:
    return StubBus(user="guest")


@pytest.fixture
def gated(kit: RuntimeKit) -> GatedRuntime:
    return GatedRuntime(kit.runtime)


@pytest.fixture
def worker(gated: GatedRuntime, bus: StubBus) -> Iterator[Worker]:
    worker = make_worker(gated, bus)
    yield worker
    gated.gate.set()
    worker.close()


def test_a_stop_during_the_start_is_held_and_applied_once_the_start_is_done(
    kit: RuntimeKit, gated: GatedRuntime, worker: Worker, bus: StubBus
) -> None:
    # given a start that the engine holds up (a slow pull)
    worker.on_dispatch(dispatch(1, "t1", kit.running()))
    wait_for(lambda: "start" in gated.calls, "the start to reach the engine")

    # when its stop arrives and is handled meanwhile, and then the start is done
    worker.on_dispatch(stop(2, "t1"))

    def handled() -> bool:
        bus.run_callbacks()
        if "removed" in gated.calls:  # the stop did not wait for the start
            return True
        attempt = worker.runners.get(("t1", 1))
        return attempt is not None and attempt.stop_held

    wait_for(handled, "the stop to be handled")
    gated.gate.set()
    drive(
        worker,
        bus,
        lambda: sorted(acked(bus)) == [1, 2] and len(worker.runners) == 0,
        "both dispatches acked, and the attempt done",
    )

    # then the task started, then stopped; no container is left; the worker keeps nothing
    assert kit.runtime.list() == []
    assert gated.calls == ["start", "started", "removed"]
    assert updates_of(bus, "t1") == [("running", None), ("completed", None)]
    assert len(worker.runners) == 0


def test_a_stop_right_behind_its_start_ends_the_task_with_nothing_left(
    kit: RuntimeKit, gated: GatedRuntime, worker: Worker, bus: StubBus
) -> None:
    # given two dispatches back to back: a start and its stop
    gated.gate.set()
    worker.on_dispatch(dispatch(1, "t1", kit.running()))
    worker.on_dispatch(stop(2, "t1"))

    # when the worker has handled both
    drive(
        worker,
        bus,
        lambda: sorted(acked(bus)) == [1, 2] and len(worker.runners) == 0,
        "both dispatches acked, and the attempt done",
    )

    # then the task ended stopped, and no container is left
    assert kit.runtime.list() == []
    assert updates_of(bus, "t1")[-1] == ("completed", None)


def test_a_stop_that_reaches_a_restarted_worker_before_its_inventory_ends_after_removal(
    bus: StubBus,
) -> None:
    # given a container left running by a worker that stopped, and a slow removal
    runtime = GatedRuntime(MockRuntime("n1"))
    runtime.gate.set()
    running = runtime.inner.start("t1", 1, TaskSpec(name="t1", image="b"))
    runtime.remove_gate.clear()
    config = WorkerConfig(name="n1", capacity=Capacity(cpus=2, memory=1024**3, disk=1024**3))
    worker = Worker(Settings(), config, runtime, bus=bus)  # type: ignore[arg-type]
    try:
        # when the worker starts again, and the stop comes before its inventory is applied
        worker.setup()
        worker._join(CLUSTER)
        wait_for(lambda: bus.callbacks, "the inventory to be taken")
        worker.on_dispatch(stop(1, "t1"))
        bus.run_callbacks()
        # then while the removal lasts its heartbeats name the container, complete
        worker.send_heartbeat()
        worker.flush()
        [beat] = sent(bus, "heartbeat")
        assert beat["inventory"] is True
        assert [t["container_id"] for t in beat["tasks"]] == [running.container_id]
        # and once removed, the attempt completes, and nothing of it is left
        runtime.remove_gate.set()
        drive(worker, bus, lambda: len(worker.runners) == 0, "the removal to be done")
        assert acked(bus) == [1]
    finally:
        runtime.remove_gate.set()
        worker.close()
    assert updates_of(bus, "t1") == [("completed", None)]
    assert runtime.inner.list() == [] and len(worker.runners) == 0


@pytest.fixture
def mock_worker(bus: StubBus) -> Iterator[tuple[MockRuntime, Worker]]:
    runtime = MockRuntime("n1")
    worker = make_worker(runtime, bus)
    yield runtime, worker
    worker.close()


def unhealthy_spec(name: str) -> TaskSpec:
    """A container whose every health check fails at once."""
    check = HealthCheck(exec=("check",), interval_seconds=0.01, failures=1)
    return TaskSpec(name=name, image="b", env={EXEC_EXIT_CODE_ENV: "1"}, health_check=check)


def test_after_a_thousand_stops_and_a_hundred_unhealthy_removals_nothing_is_kept(
    mock_worker: tuple[MockRuntime, Worker], bus: StubBus
) -> None:
    runtime, worker = mock_worker
    # given a thousand tasks started, then stopped
    for i in range(1000):
        worker.on_dispatch(dispatch(i, f"t{i}"))
    drive(worker, bus, lambda: len(acked(bus)) == 1000, "a thousand starts")
    for i in range(1000):
        worker.on_dispatch(stop(1000 + i, f"t{i}"))
    drive(worker, bus, lambda: len(acked(bus)) == 2000, "a thousand stops")

    # and a hundred tasks that turned unhealthy and were removed
    for i in range(100):
        worker.on_dispatch(dispatch(2000 + i, f"u{i}", unhealthy_spec(f"u{i}")))

    def removed() -> bool:
        failed = [u for u in sent(bus, "update") if u["state"] == "failed"]
        return len(failed) == 100 and len(acked(bus)) == 2100

    drive(worker, bus, removed, "a hundred unhealthy removals")

    # then the worker holds no trace of them: no health watch, no container, no attempt
    assert [i for i in range(100) if worker.health.health((f"u{i}", 1)) is not None] == []
    assert runtime.list() == []
    assert len(worker.health) == 0
    assert len(worker.runners) == 0
    # and its heartbeat names no task
    before = len(sent(bus, "heartbeat"))
    worker.send_heartbeat()
    worker.flush()
    assert [beat["tasks"] for beat in sent(bus, "heartbeat")[before:]] == [[]]


class HealthReportLateBus(StubBus):
    """Delays what the health thread hands over until the engine removed a container, or
    for a second: the widest gap a busy machine may leave between the two threads."""

    def __init__(self, removed: threading.Event) -> None:
        super().__init__()
        self.removed = removed

    def call_threadsafe(self, fn: Callable[[], None]) -> None:
        if threading.current_thread().name.startswith("probe"):
            self.removed.wait(timeout=1.0)
        super().call_threadsafe(fn)


class RemovalSignal(MockRuntime):
    """A MockRuntime that says when a removal is done."""

    def __init__(self, node: str, removed: threading.Event) -> None:
        super().__init__(node)
        self.removed = removed

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        super().remove(task_id, attempt, timeout)
        self.removed.set()


def test_the_unhealthy_report_leaves_before_the_failure_of_the_removal_it_caused() -> None:
    # given a worker whose health reports reach the bus thread late
    removed = threading.Event()
    bus = HealthReportLateBus(removed)
    worker = make_worker(RemovalSignal("n1", removed), bus)
    try:
        # when a task turns unhealthy and is removed for it
        worker.on_dispatch(dispatch(1, "t1", unhealthy_spec("t1")))
        drive(worker, bus, lambda: len(updates_of(bus, "t1")) == 3, "the three updates")
    finally:
        worker.close()

    # then its updates left in the order they happened
    assert updates_of(bus, "t1") == [
        ("running", "starting"),
        ("running", "unhealthy"),
        ("failed", "unhealthy"),
    ]


def test_a_worker_out_of_touch_stops_what_asked_for_it_and_reports_why(
    mock_worker: tuple[MockRuntime, Worker], bus: StubBus
) -> None:
    # given a worker whose broker never confirmed a heartbeat, running two tasks: one that
    # asks to be stopped after 1 s out of touch (which a worker that hears from the broker
    # every 2 s takes as 3 s), one that does not
    runtime, worker = mock_worker
    careful = TaskSpec(name="careful", image="b", on_disconnect={"stop_after_seconds": 1})
    worker.on_dispatch(dispatch(1, "careful", careful))
    worker.on_dispatch(dispatch(2, "plain", TaskSpec(name="plain", image="b")))
    # when 3 s pass (the disconnect watch stops it, with or without a bus thread)
    wait_for(
        lambda: [i.task_id for i in runtime.list()] == ["plain"],
        "the careful task's container to be stopped",
    )
    # then once the bus thread runs again, it reports that it stopped it, and why
    drive(worker, bus, lambda: len(updates_of(bus, "careful")) == 2, "the report of the stop")
    last = [u for u in sent(bus, "update") if u["task_id"] == "careful"][-1]
    assert last["state"] == "failed" and last["disconnected"] >= 3.0
    assert last["error"].startswith("stopped after 3.")
    assert updates_of(bus, "plain") == [("running", None)]
    assert worker.runners.get(("careful", 1)) is None
