"""`kube rm` through the manager's command handlers on a stand-in bus (no broker): what is
recorded, published, answered and dead-lettered, and how the caches follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from manager.effects import Decision
from manager.server import Manager
from manager.store import Store, connect
from shared import topology
from shared.messages import Heartbeat, HeldTask, StopTask
from shared.models import DrainingAttempt, NodeRecord, NodeStatus, TaskRecord
from shared.states import TaskState
from tests.support.commands import bus_of, report, send, sleeper, stand_in_manager
from tests.support.manager import NOW, advance, command, read_probes_back, result


@pytest.fixture
def manager(store_url: str) -> Iterator[Manager]:
    yield from stand_in_manager(store_url)


# -- kube rm: tasks and services -------------------------------------------------------------


def ended_task(manager: Manager, name: str = "job") -> TaskRecord:
    """A task that ran on n1 and completed (its exited container kept)."""
    task_id = send(manager, topology.SUBMIT_KEY, sleeper(name))["id"]
    task = manager.store.task(task_id)
    assert task is not None
    report(manager, task, TaskState.RUNNING)
    report(manager, task, TaskState.COMPLETED, tag=101)
    ended = manager.store.task(task_id)
    assert ended is not None and ended.state == TaskState.COMPLETED
    return ended


def test_an_ended_task_is_removed_with_its_history_and_its_container(manager: Manager) -> None:
    # given a completed task
    task = ended_task(manager)
    bus = bus_of(manager)
    bus.published.clear()
    # when it is removed
    answer = send(manager, topology.REMOVE_KEY, {"ids": [task.id]})
    # then the answer says so, the task and its history are gone, `task.removed` is
    # published with its record, and its node is told to remove the container it kept
    assert answer["ok"] and answer["result"] == {"tasks": [task.id], "services": [], "nodes": []}
    assert manager.store.task(task.id) is None and manager.store.events(task.id) == []
    assert bus.routing_keys() == ["task.removed", "n1"]
    assert TaskRecord.model_validate_json(bus.published[0].body).id == task.id
    assert StopTask.model_validate_json(bus.published[1].body) == StopTask(
        task_id=task.id, attempt=1
    )


def test_a_task_that_has_not_ended_is_not_removed_and_the_refusal_names_it(
    manager: Manager,
) -> None:
    # given an ended task and a running one
    done = ended_task(manager)
    task_id = send(manager, topology.SUBMIT_KEY, sleeper("web"))["id"]
    # when both, and an unknown name, are to be removed
    answer = send(manager, topology.REMOVE_KEY, {"ids": [done.id, task_id, "nope"]})
    # then nothing is removed, and the answer names each one that stays and why
    assert not answer["ok"]
    assert answer["error"] == (
        f"nothing removed: task {task_id} is scheduled, not ended: stop it first (kube stop);"
        " no task or service named 'nope'"
    )
    assert manager.store.task(done.id) is not None and manager.store.task(task_id) is not None
    assert bus_of(manager).dead == [answer["error"]]


def test_a_service_is_removed_only_once_stopped_and_its_tasks_ended(manager: Manager) -> None:
    # given a running service of two tasks
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=2))
    # then it cannot be removed while it runs
    refused = send(manager, topology.REMOVE_KEY, {"ids": ["web"]})
    assert (
        refused["error"] == "nothing removed: service web is running: stop it first (kube stop web)"
    )
    # nor once stopped, while its tasks still run
    send(manager, topology.STOP_KEY, {"id": "web"})
    tasks = manager.store.tasks_named("web")
    for task in tasks:
        report(manager, task, TaskState.RUNNING)
    refused = send(manager, topology.REMOVE_KEY, {"ids": ["web"]})
    assert refused["error"] == (
        "nothing removed: service web is stopping: 2 of its tasks have not ended"
    )
    # when its tasks have ended, it is removed with them
    for task in tasks:
        report(manager, task, TaskState.COMPLETED, tag=101)
    answer = send(manager, topology.REMOVE_KEY, {"ids": ["web"]})
    assert answer["result"] == {"tasks": [t.id for t in tasks], "services": ["web"], "nodes": []}
    assert manager.store.service("web") is None and manager.store.tasks_named("web") == []
    assert "service.removed" in bus_of(manager).routing_keys()
    # and its name makes a new service from version 1
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=1))
    service = manager.store.service("web")
    assert service is not None and service.version == 1


def test_all_ended_removes_every_ended_task_and_stopped_service_and_nothing_else(
    manager: Manager,
) -> None:
    # given an ended task, a running task, a stopped service whose tasks ended, and a
    # running service with one failed (replaced) task
    done = ended_task(manager)
    running = send(manager, topology.SUBMIT_KEY, sleeper("web"))["id"]
    send(manager, topology.SUBMIT_KEY, sleeper("old", replicas=1))
    send(manager, topology.STOP_KEY, {"id": "old"})
    old_tasks = [t.id for t in manager.store.tasks_named("old")]
    for task in manager.store.tasks_named("old"):
        report(manager, task, TaskState.COMPLETED)
    send(manager, topology.SUBMIT_KEY, sleeper("api", replicas=1, restart={"policy": "never"}))
    (first,) = manager.store.tasks_named("api")
    report(manager, first, TaskState.FAILED)
    api = [t for t in manager.store.tasks_named("api") if not t.state.terminal]
    assert len(api) == 1
    # when every ended thing is removed
    answer = send(manager, topology.REMOVE_KEY, {"all_ended": True})
    # then exactly those are gone
    assert answer["ok"]
    assert sorted(answer["result"]["tasks"]) == sorted([done.id, *old_tasks, first.id])
    assert answer["result"]["services"] == ["old"]
    left = {t.id for t in manager.store.tasks()}
    assert left == {running, api[0].id}
    assert [s.name for s in manager.store.services()] == ["api"]


def test_a_redelivered_removal_of_what_it_already_removed_answers_ok(manager: Manager) -> None:
    # given a task removed by a command whose answer was lost with the manager
    task = ended_task(manager)
    send(manager, topology.REMOVE_KEY, {"ids": [task.id]})
    # when the broker delivers that command again
    again = replace(
        command(7, topology.REMOVE_KEY, json.dumps({"ids": [task.id]}).encode()),
        redelivered=True,
    )
    manager.commands.on_command(again)
    manager.finish_batch()
    # then it is answered ok, not dead-lettered
    assert bus_of(manager).replies[-1]["ok"] and bus_of(manager).dead == []


def test_a_removal_request_must_say_what_to_remove(manager: Manager) -> None:
    answer = send(manager, topology.REMOVE_KEY, {"ids": [], "all_ended": False})
    assert answer["error"].startswith("invalid task.remove: ")
    assert "give either ids or all_ended: true" in answer["error"]


# -- crash safety and the caches -------------------------------------------------------------


def test_a_removal_is_recorded_in_the_batch_transaction_and_the_caches_follow(
    manager: Manager,
) -> None:
    # given a task drained from n1 to n2 that was then stopped: it ended, and its old
    # attempt on n1 is still remembered as draining
    n2 = NodeRecord(
        name="n2", status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )
    manager.commit(Decision(nodes=[n2]))
    task = ended_task(manager)
    draining = task.model_copy(update={"draining": DrainingAttempt(node="n2", attempt=1)})
    manager.commit(Decision(tasks=[draining]))
    manager.finish_batch()
    assert manager.store.where([task.id])
    # when its removal is handled, but its batch not finished
    body = json.dumps({"ids": [task.id]}).encode()
    manager.commands.on_command(command(3, topology.REMOVE_KEY, body))
    # then another connection still sees the task (nothing committed before the batch)
    reader = connect(manager.config.store)
    assert reader.query("SELECT count(*) FROM tasks WHERE id = ?", (task.id,)) == [(1,)]
    manager.finish_batch()
    # once finished, the row, its history and the cached attempt are gone, and the
    # removal was published: the event and a stop for each container it may have left
    assert reader.query("SELECT count(*) FROM tasks WHERE id = ?", (task.id,)) == [(0,)]
    assert reader.query("SELECT count(*) FROM task_events") == [(0,)]
    reader.close()
    assert manager.store.where([task.id]) == {}
    reopened = Store(manager.config.store)  # as a restarted manager rebuilds its caches
    assert reopened.where([task.id]) == {} and reopened.task(task.id) is None
    reopened.close()
    assert sorted(bus_of(manager).routing_keys()[-3:]) == ["n1", "n2", "task.removed"]
    assert manager.store.outbox() == []
    # and a heartbeat from n2 still holding that container gets it stopped
    beat = Heartbeat(
        node="n2", at=NOW, cpus=4, memory=1024**3, disk=1024**3,
        tasks=(HeldTask(task_id=task.id, attempt=1, state=TaskState.RUNNING, container_id="c"),),
    )  # fmt: skip
    bus_of(manager).published.clear()
    manager.on_result(result(9, beat.model_dump_json().encode()))
    manager.finish_batch()
    assert "n2" in bus_of(manager).routing_keys()


# -- kube rm --node ------------------------------------------------------------------------


def test_only_a_down_node_is_removed_and_a_returning_worker_joins_again(manager: Manager) -> None:
    # given a ready node
    refused = send(manager, topology.NODE_REMOVE_KEY, {"name": "n1"})
    assert refused["error"] == "nothing removed: node n1 is ready: only a down node can be removed"
    # when it falls silent, is marked down and is removed
    advance(manager, 60)
    manager.tick()  # the first tick only probes the broker (manager.server.PROBE_KEY)
    manager.finish_batch()
    manager.tick()  # the second probes its results queue (manager/silence.py)
    manager.finish_batch()
    read_probes_back(manager, bus_of(manager))
    manager.tick()
    manager.finish_batch()
    node = manager.store.node("n1")
    assert node is not None and node.status == NodeStatus.DOWN
    answer = send(manager, topology.NODE_REMOVE_KEY, {"name": "n1"})
    # then it is gone from the list, in memory and on disk, and `node.removed` is published
    assert answer["result"] == {"tasks": [], "services": [], "nodes": ["n1"]}
    assert manager.store.nodes() == [] and "node.removed" in bus_of(manager).routing_keys()
    # and its queue is deleted once the removal is committed, so the broker keeps none
    assert bus_of(manager).deleted == [topology.node_queue("n1")]
    reopened = Store(manager.config.store)
    assert reopened.nodes() == []
    reopened.close()
    # and an unknown node is refused
    assert send(manager, topology.NODE_REMOVE_KEY, {"name": "n1"})["error"] == "unknown node 'n1'"
    # when its worker comes back, it joins as a new node
    beat = Heartbeat(node="n1", at=manager.clock(), cpus=2, memory=1024**3, disk=0)
    manager.on_result(result(9, beat.model_dump_json().encode()))
    manager.finish_batch()
    back = manager.store.node("n1")
    assert back is not None and back.status == NodeStatus.READY and back.cpus == 2


def test_a_task_named_beside_its_service_is_removed_once(manager: Manager) -> None:
    # given a stopped service whose one task ended
    send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=1))
    send(manager, topology.STOP_KEY, {"id": "web"})
    (task,) = manager.store.tasks_named("web")
    report(manager, task, TaskState.COMPLETED)
    bus_of(manager).published.clear()
    # when its task and then the service are named, and the task again
    answer = send(manager, topology.REMOVE_KEY, {"ids": [task.id, "web", task.id]})
    # then each is removed, and announced, once
    assert answer["result"] == {"tasks": [task.id], "services": ["web"], "nodes": []}
    assert sorted(bus_of(manager).routing_keys()) == ["n1", "service.removed", "task.removed"]
