"""A service's endpoints: the serving tasks' host:port list, announced only on a change."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from manager import endpoints
from manager.config import ManagerConfig
from manager.server import Manager
from shared import topology
from shared.bus import StubBus
from shared.codec import encode
from shared.messages import Heartbeat, TaskUpdate
from shared.models import Health, ServiceEndpoints, TaskRecord, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.support.manager import NOW, advance, command, read_probes_back, result

HEALTH = {"tcp": {"port": 80}}


def task(
    task_id: str, *found: str, spec: dict[str, Any] | None = None, **fields: Any
) -> TaskRecord:
    made = TaskSpec.model_validate({"name": "web", "image": "b", **(spec or {})})
    values = {
        "id": task_id,
        "name": "web",
        "state": TaskState.RUNNING,
        "image": "b",
        "node": "n1",
        "service": "web",
        "endpoints": found,
        "created_at": NOW,
        "updated_at": NOW,
        "spec": made,
        **fields,
    }
    return TaskRecord.model_validate(values)


def test_only_serving_tasks_count_each_endpoint_once_sorted() -> None:
    tasks = [
        task("a", "10.0.0.2:8080"),
        task("b", "10.0.0.10:8080", "10.0.0.2:8080"),  # listed twice: counted once
        task("c", "10.0.0.3:1", state=TaskState.PENDING),
        task("d", "10.0.0.4:1", desired_state="stopped"),  # being stopped
        task("e", "10.0.0.5:1", spec={"health_check": HEALTH}, health=Health.STARTING),
        task("f", "10.0.0.6:1", spec={"health_check": HEALTH}, health=Health.HEALTHY),
        task("g", "10.0.0.7:1", spec={"health_check": HEALTH}, health=Health.UNHEALTHY),
    ]
    assert endpoints.of_tasks(tasks) == ("10.0.0.10:8080", "10.0.0.2:8080", "10.0.0.6:1")
    assert endpoints.of_tasks(reversed(tasks)) == endpoints.of_tasks(tasks)


# -- through the manager, on a stand-in bus -----------------------------------------------


def announced(bus: StubBus) -> list[tuple[str, ...]]:
    """The endpoints of each `service.endpoints` event published, in order."""
    return [
        ServiceEndpoints.model_validate_json(m.body).endpoints
        for m in bus.published
        if m.exchange == topology.EVENTS and m.routing_key == endpoints.EVENT_KEY
    ]


def report(manager: Manager, tag: int, t: TaskRecord, state: TaskState, **fields: object) -> None:
    assert t.node is not None
    update = TaskUpdate(
        node=t.node,
        task_id=t.id,
        attempt=t.attempt,
        state=state,
        at=NOW,
        **fields,  # type: ignore[arg-type]
    )
    manager.handle(result(tag, encode(update)), manager.on_result)
    manager.finish_batch()


def service_tasks(manager: Manager) -> list[TaskRecord]:
    return [t for t in manager.store.tasks_named("web") if t.service == "web"]


def manager_with_a_service(store_url: str, replicas: int) -> tuple[Manager, StubBus]:
    """A manager whose node n1 advertises 10.0.0.2, and a service placed on it."""
    bus = StubBus()
    manager = Manager(Settings(), ManagerConfig(store=store_url), bus=bus, clock=lambda: NOW)
    beat = Heartbeat(node="n1", at=NOW, cpus=4, memory=2**30, disk=2**30, address="10.0.0.2")
    manager.handle(result(1, encode(beat)), manager.on_result)
    spec = {"name": "web", "image": "b", "replicas": replicas, "ports": [80]}
    submit = command(2, topology.SUBMIT_KEY, json.dumps(spec).encode())
    manager.handle(submit, manager.commands.on_command)
    manager.finish_batch()
    return manager, bus


def test_scaling_up_and_down_announces_each_change_once(store_url: str) -> None:
    # given a service of two tasks placed on n1
    manager, bus = manager_with_a_service(store_url, 2)
    first, second = service_tasks(manager)
    assert announced(bus) == []  # placed, not running: nothing serves yet

    # when each reports running, and one reports the same again (a redelivery)
    report(manager, 3, first, TaskState.RUNNING, host_ports={"80": 32768})
    report(manager, 4, second, TaskState.RUNNING, host_ports={"80": 32769})
    report(manager, 5, second, TaskState.RUNNING, host_ports={"80": 32769})

    # then each change was announced once, and the record and the query agree
    assert announced(bus) == [("10.0.0.2:32768",), ("10.0.0.2:32768", "10.0.0.2:32769")]
    stored = manager.store.service("web")
    assert stored is not None and stored.endpoints == ("10.0.0.2:32768", "10.0.0.2:32769")
    reply = ask(manager, bus, 6, "web")
    assert reply["ok"] and reply["result"]["endpoints"] == ["10.0.0.2:32768", "10.0.0.2:32769"]

    # when the service is scaled down to one: the stopped task leaves at once
    manager.handle(
        command(7, topology.SCALE_KEY, b'{"name": "web", "replicas": 1}'),
        manager.commands.on_command,
    )
    manager.finish_batch()
    assert len(announced(bus)) == 3 and len(announced(bus)[-1]) == 1
    left = announced(bus)[-1]

    # and its container's exit, once stopped, announces nothing more
    stopped = next(t for t in service_tasks(manager) if t.desired_state == "stopped")
    report(manager, 8, stopped, TaskState.COMPLETED, exit_code=0)
    assert len(announced(bus)) == 3
    assert manager.store.service("web").endpoints == left  # type: ignore[union-attr]
    manager.store.close()


def test_a_lost_node_takes_its_endpoints_away(store_url: str) -> None:
    # given a service task running on n1
    manager, bus = manager_with_a_service(store_url, 1)
    (only,) = service_tasks(manager)
    report(manager, 3, only, TaskState.RUNNING, host_ports={"80": 32768})
    assert announced(bus) == [("10.0.0.2:32768",)]

    # when n1 goes silent past the node-down interval
    advance(manager, 60)
    manager._sent_at = manager.monotonic()  # the broker took a publish since: silence is the node's
    manager.tick()
    manager.finish_batch()
    read_probes_back(manager, bus)  # every result sent before now was read
    manager.tick()
    manager.finish_batch()

    # then the service is announced with no endpoint
    assert announced(bus)[-1] == ()
    manager.store.close()


def ask(manager: Manager, bus: StubBus, tag: int, name: str) -> dict[str, Any]:
    """The reply to a `query.endpoints` for the name."""
    query = command(tag, "query.endpoints", json.dumps({"name": name}).encode())
    manager.on_query(dataclasses.replace(query, queue=topology.QUERIES_QUEUE))
    reply: dict[str, Any] = json.loads(bus.published[-1].body)
    return reply


def test_the_query_answers_for_a_task_id_and_refuses_an_unknown_name(store_url: str) -> None:
    manager, bus = manager_with_a_service(store_url, 1)
    (only,) = service_tasks(manager)
    assert ask(manager, bus, 3, only.id)["result"]["endpoints"] == []  # scheduled: not yet
    report(manager, 4, only, TaskState.RUNNING, host_ports={"80": 32768})
    assert ask(manager, bus, 5, only.id)["result"]["endpoints"] == ["10.0.0.2:32768"]
    unknown = ask(manager, bus, 6, "nothing-here")
    assert not unknown["ok"] and unknown["error"] == "no service or task named 'nothing-here'"
    manager.store.close()


def test_the_query_answers_for_a_task_name_with_the_tasks_that_serve(store_url: str) -> None:
    # given a plain task named api (no service of that name), running on n1
    manager, bus = manager_with_a_service(store_url, 0)
    spec = {"name": "api", "image": "b", "ports": [80]}
    manager.handle(
        command(3, topology.SUBMIT_KEY, json.dumps(spec).encode()), manager.commands.on_command
    )
    manager.finish_batch()
    (task,) = manager.store.tasks_named("api")
    assert ask(manager, bus, 4, "api")["result"]["endpoints"] == []  # scheduled: not yet
    # when it runs, asking by its name answers where it serves
    report(manager, 5, task, TaskState.RUNNING, host_ports={"80": 32769})
    assert ask(manager, bus, 6, "api")["result"]["endpoints"] == ["10.0.0.2:32769"]
    manager.store.close()
