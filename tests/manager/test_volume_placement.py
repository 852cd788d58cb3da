"""Volumes pin their tasks (manager/volumes.py): placement, the reason as data and its
sentence, and what `kube volume rm` decides. Pure: no broker, no store."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from manager import core, volumes
from manager.blocked import shape
from manager.fit import PlacementContext
from manager.scheduler import Epvm, NoFit, Placement, RoundRobin, place
from shared.codec import decode
from shared.messages import DISPATCH, RemoveVolume
from shared.models import NodeRecord, NodeStatus, TaskSpec
from shared.placement import NoFitKind, sentence
from shared.volumes import VolumeRecord

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def node(name: str, status: NodeStatus = NodeStatus.READY, cpus: float = 4) -> NodeRecord:
    return NodeRecord(
        name=name, status=status, cpus=cpus, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )


def spec(*names: str, **fields: object) -> TaskSpec:
    volumes = [{"name": n, "target": f"/data/{n}"} for n in names]
    return TaskSpec.model_validate({"name": "db", "image": "busybox", "volumes": volumes, **fields})


def test_a_task_whose_volume_a_node_holds_goes_there_whatever_the_scores() -> None:
    # given three nodes, node-2 holding pgdata and the busiest
    nodes = [node("node-1"), node("node-2", cpus=1), node("node-3")]
    context = PlacementContext(volumes={"pgdata": "node-2"})
    # when a task naming pgdata is placed, by each scheduler
    for scheduler in (Epvm(), RoundRobin()):
        # then it goes to node-2
        assert place(scheduler, spec("pgdata"), nodes, context) == Placement("node-2")


def test_a_task_whose_volumes_node_is_down_waits_for_it_with_that_reason() -> None:
    # given node-2 holds pgdata and is down, node-1 is free
    nodes = [node("node-1"), node("node-2", NodeStatus.DOWN)]
    # when the task is placed
    outcome = place(Epvm(), spec("pgdata"), nodes, PlacementContext(volumes={"pgdata": "node-2"}))
    # then it is not placed on node-1: the reason names the volume and its node, as data
    assert isinstance(outcome, NoFit)
    assert outcome.unplaced.kind is NoFitKind.NODES_DOWN
    assert outcome.unplaced.volumes == {"pgdata": "node-2"}
    assert [m.node for m in outcome.unplaced.nodes] == ["node-2"]
    # and its sentence is the one people read
    assert sentence(outcome.unplaced, spec("pgdata")) == (
        "waiting for node-2, which holds volume pgdata"
    )


def test_the_holding_node_short_of_room_is_said_after_the_wait() -> None:
    nodes = [node("node-1"), node("node-2", cpus=1)]
    outcome = place(
        Epvm(), spec("pgdata", cpu=2), nodes, PlacementContext(volumes={"pgdata": "node-2"})
    )
    assert isinstance(outcome, NoFit)
    assert outcome.unplaced.kind is NoFitKind.INSUFFICIENT_CPU
    assert sentence(outcome.unplaced, spec("pgdata", cpu=2)) == (
        "waiting for node-2, which holds volume pgdata: node-2 has 1 cpu free"
    )


def test_a_removed_holder_and_volumes_on_two_nodes_are_said() -> None:
    nodes = [node("node-1")]
    gone = place(Epvm(), spec("pgdata"), nodes, PlacementContext(volumes={"pgdata": "node-9"}))
    assert isinstance(gone, NoFit)
    assert sentence(gone.unplaced, spec("pgdata")).startswith(
        "waiting for node-9, which holds volume pgdata (node-9 has left the cluster"
    )
    held = {"a": "node-1", "b": "node-2"}
    apart = place(
        Epvm(), spec("a", "b"), [node("node-1"), node("node-2")], PlacementContext(volumes=held)
    )
    assert isinstance(apart, NoFit) and apart.unplaced.kind is NoFitKind.VOLUMES_APART
    assert sentence(apart.unplaced, spec("a", "b")) == (
        "its volumes are held by different nodes, and a task runs on one:"
        " node-1 holds a; node-2 holds b"
    )


def test_a_new_volume_is_recorded_where_its_first_task_goes_and_pins_the_next() -> None:
    # given two tasks naming one new volume, scheduled in one pass by round robin
    first = core.accept(spec("pgdata"), "t1", NOW).tasks
    second = core.accept(spec("pgdata"), "t2", NOW).tasks
    nodes = [node("node-1"), node("node-2")]
    # when they are placed
    decision = core.schedule([*first, *second], nodes, RoundRobin(), NOW)
    # then the volume is recorded on the first task's node, and the second goes there too
    placed = {t.id: t.node for t in decision.tasks}
    assert decision.volumes == [VolumeRecord(name="pgdata", node=placed["t1"], created_at=NOW)]
    assert placed["t2"] == placed["t1"]


def test_a_known_volume_is_not_recorded_again() -> None:
    pending = core.accept(spec("pgdata"), "t1", NOW).tasks
    decision = core.schedule(
        pending, [node("node-1"), node("node-2")], Epvm(), NOW, volumes={"pgdata": "node-2"}
    )
    assert decision.volumes == [] and decision.tasks[-1].node == "node-2"


def test_tasks_of_other_volumes_are_of_another_shape() -> None:
    assert shape(spec("a")) != shape(spec("b")) != shape(spec())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"replicas": 2}, "a service with volumes runs at most 1 replica (asked for 2)"),
        ({"volumes": [{"name": "a", "target": "/x"}] * 2}, "each volume may be listed once"),
        ({"volumes": [{"name": "a", "target": "x"}]}, "String should match pattern"),
        ({"volumes": [{"name": "../a", "target": "/x"}]}, "String should match pattern"),
        ({"volumes": [{"name": "a", "target": "/"}]}, "may not be mounted at / (the container's"),
        ({"volumes": [{"name": "a", "target": "//"}]}, "may not be mounted at // (the"),
        ({"volumes": [{"name": "a", "target": "/data/../etc"}]}, "may not contain '..'"),
        ({"volumes": [{"name": "a", "target": "/.."}]}, "may not contain '..'"),
    ],
)
def test_a_spec_with_bad_volumes_is_refused_with_the_reason(
    fields: dict[str, object], problem: str
) -> None:
    given = {"name": "db", "image": "busybox", "volumes": [{"name": "a", "target": "/x"}]}
    with pytest.raises(ValidationError, match=re.escape(problem)):
        TaskSpec.model_validate({**given, **fields})


def test_a_one_replica_service_may_have_volumes() -> None:
    assert spec("a", replicas=1).replicas == 1


def record(name: str = "pgdata", node_name: str = "node-2", *users: str) -> VolumeRecord:
    return VolumeRecord(name=name, node=node_name, created_at=NOW, used_by=users)


def test_removal_forgets_the_volume_and_tells_its_node() -> None:
    done = volumes.removal(record(), "pgdata", node("node-2"), force=False)
    assert not isinstance(done, volumes.Refusal)
    assert done.removed.volumes == ["pgdata"]
    ((out),) = done.outgoing
    assert out.routing_key == "node-2"
    assert decode(DISPATCH, out.body) == RemoveVolume(name="pgdata")


@pytest.mark.parametrize(
    ("volume", "holder", "force", "waiting", "said"),
    [
        (None, None, False, set(), "unknown volume 'pgdata'"),
        (record("pgdata", "node-2", "db-1"), node("node-2"), False, set(), "in use by task db-1"),
        (record("pgdata", "node-2", "db-1"), node("node-2"), True, set(), "in use by task db-1"),
        (record(), node("node-2", NodeStatus.DOWN), False, set(), "on node-2, which is down"),
        (record(), None, False, set(), "node-2, which has left the cluster"),
    ],
)
def test_removal_is_refused_with_the_reason(
    volume: VolumeRecord | None,
    holder: NodeRecord | None,
    force: bool,
    waiting: set[str],
    said: str,
) -> None:
    done = volumes.removal(volume, "pgdata", holder, force, waiting)
    assert isinstance(done, volumes.Refusal)
    assert said in done.sentence()


def test_force_forgets_a_down_nodes_volume_and_frees_its_waiting_tasks() -> None:
    # given pgdata on a down node-2, named by a task waiting to be placed
    volume = record("pgdata", "node-2", "db-1")
    # when it is removed with --force
    done = volumes.removal(volume, "pgdata", node("node-2", NodeStatus.DOWN), True, {"db-1"})
    # then it is forgotten, and nothing is sent to the down node
    assert not isinstance(done, volumes.Refusal)
    assert done.removed.volumes == ["pgdata"] and done.outgoing == []
