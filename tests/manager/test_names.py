"""Names and ids, and re-creating a stopped service, through the manager's command
handlers on a stand-in bus (no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from manager.server import Manager
from shared import topology
from shared.states import TaskState
from tests.support.commands import bus_of, report, send, sleeper, stand_in_manager

LONGEST = "a" * 63
"""A name of the most characters the spec accepts."""


@pytest.fixture
def manager(store_url: str) -> Iterator[Manager]:
    yield from stand_in_manager(store_url)


# -- names and ids ------------------------------------------------------------------------


def test_a_task_with_the_longest_name_and_no_id_gets_a_valid_id(manager: Manager) -> None:
    # when a task named with 63 characters is submitted without an id or a message id
    answer = send(manager, topology.SUBMIT_KEY, sleeper(LONGEST))
    # then it is accepted with an id of at most 63 characters, and placed
    assert answer["ok"], answer
    task = manager.store.task(answer["id"])
    assert task is not None and task.name == LONGEST and task.state == TaskState.SCHEDULED
    assert len(task.id) <= 63


def test_a_service_with_the_longest_name_starts_its_tasks(manager: Manager) -> None:
    # when a service named with 63 characters is submitted
    answer = send(manager, topology.SUBMIT_KEY, sleeper(LONGEST, replicas=2))
    # then it is answered ok (not raised and requeued), and its two tasks are placed
    assert answer == {"ok": True, "id": LONGEST, "error": None, "result": None, "next": None}
    tasks = manager.store.tasks_named(LONGEST)
    assert [t.state for t in tasks] == [TaskState.SCHEDULED] * 2
    assert all(len(t.id) <= 63 for t in tasks) and len({t.id for t in tasks}) == 2
    assert bus_of(manager).dead == []


# -- a stopped service's name is free again ------------------------------------------------


def test_a_stopped_service_is_created_again_by_a_new_submit(manager: Manager) -> None:
    # given a service of two tasks, stopped, its tasks ended
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=2))
    send(manager, topology.STOP_KEY, {"id": "web"})
    for task in manager.store.tasks_named("web"):
        report(manager, task, TaskState.COMPLETED)
    old = {t.id for t in manager.store.tasks_named("web")}
    # when a spec of the same name is submitted again, with three replicas
    answer = send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=3, image="busybox:2"))
    # then the service runs again, with the new spec, under a later version, with three
    # new tasks; the old ones stay in the list, ended
    assert answer["ok"] and answer["id"] == "web"
    service = manager.store.service("web")
    assert service is not None
    assert (service.desired_state, service.replicas, service.spec.image) == (
        "running",
        3,
        "busybox:2",
    )
    assert service.version == 2
    tasks = {t.id: t for t in manager.store.tasks_named("web")}
    fresh = [t for i, t in tasks.items() if i not in old]
    assert len(fresh) == 3 and {t.version for t in fresh} == {2}
    assert {t.state for i, t in tasks.items() if i in old} == {TaskState.COMPLETED}


def test_a_running_service_submitted_again_is_left_as_it_is(manager: Manager) -> None:
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=2))
    answer = send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=5))
    service = manager.store.service("web")
    assert answer["ok"] and service is not None and service.replicas == 2
    assert len(manager.store.tasks_named("web")) == 2


def test_scaling_a_stopped_service_starts_it_again_with_its_spec(manager: Manager) -> None:
    # given a stopped service of one task
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=1))
    send(manager, topology.STOP_KEY, {"id": "web"})
    # when it is scaled to two
    assert send(manager, topology.SCALE_KEY, {"name": "web", "replicas": 2})["ok"]
    # then it runs again, with two new tasks beside the stopped one
    service = manager.store.service("web")
    assert service is not None and service.desired_state == "running"
    live = [t for t in manager.store.tasks_named("web") if t.desired_state == "running"]
    assert len(live) == 2
