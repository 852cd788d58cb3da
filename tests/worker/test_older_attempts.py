"""Attempt N of a task starts only once this node's older attempts of it are gone: two
copies of one task never run on one node (issue 13: a restarted worker started attempt 2
before removing the attempt 1 it was adopting; both lived ~10 s)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from shared.bus import StubBus
from shared.models import TaskSpec
from tests.support.dispatches import dispatch
from tests.worker.conftest import reported, stub_worker
from worker.files import FileMount
from worker.runtime.base import ContainerInfo
from worker.runtime.mock import MockRuntime
from worker.service import Worker

SPEC = TaskSpec(name="t1", image="b", command=("sleep", "60"))


class Recording(MockRuntime):
    """A mock engine that records starts and removals, and what ran at each start."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.calls: list[tuple[str, int, list[int]]] = []

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        running = [c.attempt for c in self.list(task_id) if c.status.value == "running"]
        self.calls.append(("start", attempt, running))
        return super().start(task_id, attempt, spec, files)

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        self.calls.append(("remove", attempt, []))
        super().remove(task_id, attempt, timeout)


@pytest.fixture
def worker() -> Iterator[tuple[Worker, StubBus, Recording]]:
    runtime = Recording("n1")
    worker, bus = stub_worker(runtime)
    yield worker, bus, runtime
    worker.close()


def test_attempt_2_starts_only_once_the_attempt_1_the_node_still_runs_is_removed(
    worker: tuple[Worker, StubBus, Recording],
) -> None:
    # given a node whose engine still runs attempt 1 of a task, not yet adopted
    w, bus, runtime = worker
    runtime.start("t1", 1, SPEC)
    # when the manager asks for attempt 2
    w.on_dispatch(dispatch(1, "t1", SPEC, attempt=2))
    updates = reported(w, bus, 1)
    # then attempt 1 was removed first, and attempt 2 started with no other copy running
    assert runtime.calls[1:] == [("remove", 1, []), ("start", 2, [])]
    assert updates[-1]["attempt"] == 2 and updates[-1]["state"] == "running"
    assert [c.attempt for c in runtime.list("t1")] == [2]


def test_a_first_attempt_starts_at_once(
    worker: tuple[Worker, StubBus, Recording],
) -> None:
    w, bus, runtime = worker
    w.on_dispatch(dispatch(1, "t1", SPEC))
    reported(w, bus, 1)
    assert runtime.calls == [("start", 1, [])]
