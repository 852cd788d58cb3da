"""The hold of a replacement whose cut-off copy stops itself, on the manager's monotonic
clock (manager/holds.py): a step of the wall clock changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from manager import core, nodes
from manager.config import ManagerConfig
from manager.effects import Decision
from manager.scheduler import RoundRobin
from manager.server import Manager
from manager.store import Store, sqlite_url
from shared.bus import StubBus
from shared.models import NodeStatus, TaskRecord, TaskSpec
from shared.settings import Settings
from shared.specs import OnDisconnect
from shared.states import TaskState
from tests.support.manager import NOW, ready_node

STOP_AFTER = 10.0
SILENT = 6.0  # how long the node was silent when it was found down
HOLD = STOP_AFTER + nodes.DISCONNECT_MARGIN - SILENT


def careful(task_id: str = "t1") -> TaskRecord:
    """A task running on n1 that asks its worker to stop it after 10 s cut off."""
    spec = TaskSpec(name="a", image="b", on_disconnect=OnDisconnect(stop_after_seconds=STOP_AFTER))
    accepted = core.accept(spec, task_id, NOW).tasks[0]
    update = {"state": TaskState.RUNNING, "node": "n1", "attempt": 1, "container_id": "c1"}
    return accepted.model_copy(update=update)


class Clocks:
    """A manager's two clocks, moved by the test."""

    def __init__(self, wall: datetime, ticks: float) -> None:
        self.wall, self.ticks = wall, ticks

    def manager(self, url: str) -> Manager:
        manager = Manager(
            Settings(),
            ManagerConfig(store=url),
            bus=StubBus(),
            clock=lambda: self.wall,
            monotonic=lambda: self.ticks,
        )
        manager.setup()
        return manager


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = sqlite_url(tmp_path / "m.db")
    Store(url).close()
    yield url


def lose_n1(manager: Manager) -> None:
    """n1 runs the careful task, then is found down: its replacement is held."""
    manager.commit(Decision(nodes=[ready_node("n1"), ready_node("n2")], tasks=[careful()]))
    down = ready_node("n1", status=NodeStatus.DOWN)
    manager.commit(
        Decision(nodes=[down]).extend(
            nodes.node_lost("n1", [careful()], manager.clock(), silent_for=SILENT)
        )
    )
    manager.schedule_pending()
    assert manager.store.task("t1").state == TaskState.PENDING  # type: ignore[union-attr]


def state(manager: Manager) -> tuple[TaskState, str | None]:
    manager.schedule_pending()
    task = manager.store.task("t1")
    assert task is not None
    return task.state, task.node


def test_a_lost_tasks_hold_is_asked_of_the_service_as_data() -> None:
    decision = nodes.node_lost("n1", [careful()], NOW, silent_for=SILENT)
    assert decision.holds == {"t1": HOLD}
    # and a task that keeps running when cut off has none
    plain = careful().model_copy(update={"spec": TaskSpec(name="a", image="b")})
    assert nodes.node_lost("n1", [plain], NOW, silent_for=SILENT).holds == {}


@pytest.mark.parametrize("step", [60.0, -60.0])
def test_core_places_a_held_task_by_its_monotonic_hold_whatever_the_wall_clock(
    step: float,
) -> None:
    held = nodes.node_lost("n1", [careful()], NOW, silent_for=SILENT).tasks[-1]
    holds = {"t1": 100.0 + HOLD}
    stepped = NOW + timedelta(seconds=step)
    free = [ready_node("n2")]
    early = core.schedule([held], free, RoundRobin(), stepped, holds=holds, ticks=100.0 + 8.9)
    assert early.tasks == []
    due = core.schedule([held], free, RoundRobin(), stepped, holds=holds, ticks=100.0 + HOLD)
    assert due.tasks[-1].state == TaskState.SCHEDULED


@pytest.mark.parametrize("step", [60.0, -60.0])
def test_a_wall_clock_step_during_the_hold_neither_shortens_nor_lengthens_it(
    url: str, step: float
) -> None:
    # given a careful task lost with n1, its replacement held on the manager's clocks
    clocks = Clocks(NOW, 100.0)
    manager = clocks.manager(url)
    lose_n1(manager)
    # when the wall clock steps (NTP) while the hold runs
    clocks.wall = NOW + timedelta(seconds=step)
    # then it is still held a moment before the hold ends on the monotonic clock
    clocks.ticks = 100.0 + HOLD - 0.1
    assert state(manager) == (TaskState.PENDING, "n1")
    # and placed as soon as it ends, on the other node
    clocks.ticks = 100.0 + HOLD
    assert state(manager) == (TaskState.SCHEDULED, "n2")
    manager.store.close()


def test_a_manager_that_starts_during_a_hold_holds_the_task_for_its_full_length_again(
    url: str,
) -> None:
    # given a careful task lost with n1 and held, and its manager gone
    first = Clocks(NOW, 100.0)
    manager = first.manager(url)
    lose_n1(manager)
    manager.store.close()
    # when another manager starts (its monotonic clock unrelated, its wall clock 60 s on)
    second = Clocks(NOW + timedelta(seconds=60), 5000.0)
    again = second.manager(url)
    # then it cannot know how much of the hold passed: it holds the task for the whole
    # stop_after and margin from its own start
    second.ticks = 5000.0 + STOP_AFTER + nodes.DISCONNECT_MARGIN - 0.1
    assert state(again) == (TaskState.PENDING, "n1")
    second.ticks = 5000.0 + STOP_AFTER + nodes.DISCONNECT_MARGIN
    assert state(again) == (TaskState.SCHEDULED, "n2")
    again.store.close()


def test_a_starting_manager_does_not_hold_a_task_whose_loss_waited_for_nothing(
    url: str,
) -> None:
    # given a careful task whose node was silent past its stop and margin when found down
    clocks = Clocks(NOW, 100.0)
    manager = clocks.manager(url)
    manager.commit(Decision(nodes=[ready_node("n1"), ready_node("n2")], tasks=[careful()]))
    lost = nodes.node_lost("n1", [careful()], NOW, silent_for=60.0)
    assert lost.holds == {}
    down = ready_node("n1", status=NodeStatus.DOWN)
    manager.commit(Decision(nodes=[down], tasks=[lost.tasks[-1]], events=lost.events))
    manager.store.close()
    # when another manager starts, then it places the task at once
    again = Clocks(NOW, 7.0).manager(url)
    assert state(again) == (TaskState.SCHEDULED, "n2")
    again.store.close()
