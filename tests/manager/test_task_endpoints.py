"""A task's endpoints: its node's address and each host port, found when it runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kube import render
from manager import core, nodes
from manager.scheduler import RoundRobin
from shared.messages import TaskUpdate
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.specs import RestartMode, RestartPolicy
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PORTS = {"8080": 32768, "443": 8443}


def scheduled() -> TaskRecord:
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=2, memory=2**30, disk=2**30, last_heartbeat=NOW
    )
    spec = TaskSpec(name="web", image="b", ports=(8080, {"container": 443, "host": 8443}))
    accepted = core.accept(spec, "web-1", NOW).tasks
    return core.schedule(accepted, [node], RoundRobin(), NOW).tasks[-1]


def report(task: TaskRecord, state: TaskState, **fields: object) -> TaskUpdate:
    return TaskUpdate(
        node=task.node or "n1",
        task_id=task.id,
        attempt=task.attempt,
        state=state,
        at=NOW,
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.2", ("10.0.0.2:8443", "10.0.0.2:32768")),
        ("fd00::2", ("[fd00::2]:8443", "[fd00::2]:32768")),
        ("node-1.lan", ("node-1.lan:8443", "node-1.lan:32768")),
        (None, ()),
    ],
)
def test_a_running_report_makes_endpoints_from_the_nodes_address(
    address: str | None, expected: tuple[str, ...]
) -> None:
    # given a scheduled task, when its node reports it running with two host ports
    task = scheduled()
    decision = core.apply_update(
        task, report(task, TaskState.RUNNING, host_ports=PORTS), NOW, address
    )

    # then its endpoints are the address and each host port, in container port order
    running = decision.tasks[-1]
    assert running.endpoints == expected
    assert running.host_ports == PORTS  # still there, for older readers


def test_an_ended_attempt_has_no_endpoints_left() -> None:
    task = scheduled()
    running = core.apply_update(
        task, report(task, TaskState.RUNNING, host_ports=PORTS), NOW, "10.0.0.2"
    ).tasks[-1]
    restarted = core.apply_update(running, report(running, TaskState.FAILED, exit_code=1), NOW)
    assert restarted.tasks[-1].state == TaskState.PENDING
    assert (restarted.tasks[-1].endpoints, restarted.tasks[-1].host_ports) == ((), {})


def running_task() -> TaskRecord:
    task = scheduled().model_copy(
        update={
            "spec": scheduled().spec.model_copy(
                update={"restart": RestartPolicy(policy=RestartMode.NEVER)}
            )
        }
    )
    update = report(task, TaskState.RUNNING, host_ports=PORTS)
    return core.apply_update(task, update, NOW, "10.0.0.2").tasks[-1]


@pytest.mark.parametrize(("state", "exit_code"), [(TaskState.COMPLETED, 0), (TaskState.FAILED, 1)])
def test_an_attempt_that_ends_the_task_drops_its_endpoints_and_host_ports(
    state: TaskState, exit_code: int
) -> None:
    # given a running task that is not restarted
    running = running_task()
    assert running.endpoints

    # when its attempt ends
    decision = core.apply_update(running, report(running, state, exit_code=exit_code), NOW)

    # then the record and the event it publishes show no ports of the gone container
    ended = decision.tasks[-1]
    assert ended.state == state
    assert (ended.endpoints, ended.host_ports) == ((), {})
    event = json.loads(decision.outgoing[0].body)
    assert (event["endpoints"], event["host_ports"]) == ([], {})


def test_an_attempt_lost_with_its_node_drops_its_endpoints_and_host_ports() -> None:
    # given a running task, when its node is lost
    running = running_task()
    decision = nodes.node_lost("n1", [running], NOW, silent_for=30.0)

    # then neither the lost record nor the final one keep its ports
    assert [t.state for t in decision.tasks] == [TaskState.LOST, TaskState.FAILED]
    assert all((t.endpoints, t.host_ports) == ((), {}) for t in decision.tasks)


def test_a_stale_attempts_report_changes_no_endpoints() -> None:
    task = scheduled()
    stale = report(task, TaskState.RUNNING, host_ports=PORTS).model_copy(update={"attempt": 9})
    decision = core.apply_update(task, stale, NOW, "10.0.0.2")
    assert decision.tasks == [] and decision.refused


def test_ps_inspect_and_run_wait_show_each_port_and_where_it_answers() -> None:
    # given a running task with endpoints
    task = scheduled()
    running = core.apply_update(
        task, report(task, TaskState.RUNNING, host_ports=PORTS), NOW, "10.0.0.2"
    ).tasks[-1]

    # then `kube ps` shows container port -> endpoint, compactly, in port order
    row = render.tasks([running]).splitlines()[1]
    assert "443->10.0.0.2:8443,8080->10.0.0.2:32768" in row.split()
    # `kube inspect` lists the endpoints
    assert "endpoints:   10.0.0.2:8443 10.0.0.2:32768" in render.task(running, []).splitlines()
    # and `kube run --wait` ends with them
    assert render.placement(running) == (
        "web-1 running on n1 ports 443->10.0.0.2:8443,8080->10.0.0.2:32768"
    )


def test_without_an_address_the_host_ports_alone_are_shown() -> None:
    task = scheduled()
    running = core.apply_update(
        task, report(task, TaskState.RUNNING, host_ports=PORTS), NOW, None
    ).tasks[-1]
    assert render.placement(running) == "web-1 running on n1 ports 443->8443,8080->32768"
    assert "endpoints:   -" in render.task(running, []).splitlines()


def test_ps_shows_three_ports_of_a_task_and_counts_the_rest() -> None:
    # given a running task with 256 published ports
    many = {str(port): 40000 + port for port in range(1, 257)}
    task = scheduled()
    running = core.apply_update(
        task, report(task, TaskState.RUNNING, host_ports=many), NOW, "10.0.0.2"
    ).tasks[-1]

    # then its `kube ps` row shows three of them and how many more
    row = render.tasks([running]).splitlines()[1]
    shown = "1->10.0.0.2:40001,2->10.0.0.2:40002,3->10.0.0.2:40003,+253 more"
    assert shown in row and len(row) < 200
    # while `kube inspect` lists them all
    assert "10.0.0.2:40256" in render.task(running, [])
