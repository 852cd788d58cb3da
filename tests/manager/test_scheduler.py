"""The scheduler's decisions, over plain data: no broker, no Docker."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager import fit
from manager.constraints import holds
from manager.fit import PlacementContext
from manager.scheduler import (
    DEFAULT_SCHEDULER,
    LIEB,
    MAX_JOBS,
    SCHEDULERS,
    Epvm,
    NoFit,
    Placement,
    RoundRobin,
    Scheduler,
    allocate,
    filter_candidates,
    fits,
    make_scheduler,
    place,
)
from manager.unplaced import MAX_REASON_NODES
from shared.models import NodeRecord, NodeStats, NodeStatus, TaskSpec
from shared.placement import NoFitKind, sentence
from tests.support.manager import ready_node

GI = 1024**3
MI = 1024**2
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def node(name: str, **fields: Any) -> NodeRecord:
    """A ready node with 4 cpus, 4Gi memory and 100Gi disk unless told otherwise."""
    return ready_node(name, NOW, **fields)


def task(cpu: float = 0.0, memory: int = 0, disk: int = 0, name: str = "web") -> TaskSpec:
    """A task asking for the given resources."""
    return TaskSpec(name=name, image="nginx:alpine", cpu=cpu, memory=memory, disk=disk)


def reason(result: Placement | NoFit, spec: TaskSpec) -> str:
    """The sentence a NoFit is rendered to for the task, failing the test on a placement."""
    assert isinstance(result, NoFit), result
    return sentence(result.unplaced, spec)


def placed_on(result: Placement | NoFit) -> str:
    """The node name of a placement, failing the test on NoFit."""
    assert isinstance(result, Placement), result
    return result.node


# --- the candidate filter -------------------------------------------------------------


def test_a_down_node_is_not_a_candidate() -> None:
    # given a down node and a ready one, both empty
    nodes = [node("node-1", status=NodeStatus.DOWN), node("node-2")]
    # when filtering for a small task
    candidates = filter_candidates(task(cpu=0.5), nodes)
    # then only the ready node remains
    assert [n.name for n in candidates] == ["node-2"]


@pytest.mark.parametrize(
    ("fields", "spec"),
    [
        pytest.param({"cpus": 2.0, "allocated_cpu": 1.5}, task(cpu=1.0), id="cpu"),
        pytest.param({"memory": GI, "allocated_memory": 900 * MI}, task(memory=200 * MI), id="mem"),
        pytest.param({"disk": 10 * GI, "allocated_disk": 9 * GI}, task(disk=2 * GI), id="disk"),
    ],
)
def test_a_node_short_of_any_resource_is_not_a_candidate(
    fields: dict[str, Any], spec: TaskSpec
) -> None:
    # given a node with too little of one resource free
    short = node("node-1", **fields)
    # when filtering
    # then it is excluded
    assert filter_candidates(spec, [short]) == []


def test_an_exact_fit_is_a_candidate() -> None:
    # given a node with exactly the task's cpu, memory and disk free
    exact = node(
        "node-1",
        cpus=2.0,
        allocated_cpu=1.5,
        memory=GI,
        allocated_memory=GI - 64 * MI,
        disk=10 * GI,
        allocated_disk=8 * GI,
    )
    # when filtering for that task
    # then the node fits
    assert filter_candidates(task(cpu=0.5, memory=64 * MI, disk=2 * GI), [exact]) == [exact]


def test_float_cores_that_add_up_exactly_still_fit() -> None:
    # given 0.1 + 0.2 cores reserved on a 0.6-core node (0.30000000000000004 in floats)
    busy = allocate(allocate(node("node-1", cpus=0.6), task(cpu=0.1)), task(cpu=0.2))
    # when asking for the remaining 0.3 cores
    # then the float residue does not reject it
    assert fits(task(cpu=0.3), busy)


def test_candidates_come_back_in_name_order() -> None:
    # given nodes listed out of order
    nodes = [node("node-3"), node("node-1"), node("node-2")]
    # when filtering
    # then the candidates are sorted by name
    assert [n.name for n in filter_candidates(task(), nodes)] == ["node-1", "node-2", "node-3"]


# --- round robin ----------------------------------------------------------------------


def test_round_robin_cycles_through_nodes_in_name_order() -> None:
    # given three ready nodes, listed out of order
    nodes = [node("node-2"), node("node-3"), node("node-1")]
    scheduler = RoundRobin()
    # when placing four tasks
    picks = [placed_on(place(scheduler, task(cpu=0.1), nodes)) for _ in range(4)]
    # then consecutive tasks go to consecutive nodes, wrapping around
    assert picks == ["node-1", "node-2", "node-3", "node-1"]


def test_round_robin_skips_nodes_that_are_not_candidates() -> None:
    # given node-2 is down and node-3 is full
    nodes = [
        node("node-1"),
        node("node-2", status=NodeStatus.DOWN),
        node("node-3", allocated_cpu=4.0),
        node("node-4"),
    ]
    scheduler = RoundRobin()
    # when placing three tasks
    picks = [placed_on(place(scheduler, task(cpu=1.0), nodes)) for _ in range(3)]
    # then only the candidates take turns
    assert picks == ["node-1", "node-4", "node-1"]


def test_round_robin_resumes_after_a_node_that_left() -> None:
    # given the last task went to node-2, which has since left
    scheduler = RoundRobin()
    scheduler.last = "node-2"
    nodes = [node("node-1"), node("node-3")]
    # when placing the next task
    # then it goes to the next name after node-2
    assert placed_on(place(scheduler, task(), nodes)) == "node-3"


def test_round_robin_scores_are_rotation_distances() -> None:
    # given the cursor on node-2 of three
    scheduler = RoundRobin()
    scheduler.last = "node-2"
    nodes = [node("node-1"), node("node-2"), node("node-3")]
    # when scoring
    scores = scheduler.score(task(), nodes)
    # then node-3 is next, then node-1, then node-2
    assert scores == {"node-3": 0.0, "node-1": 1.0, "node-2": 2.0}


# --- E-PVM ----------------------------------------------------------------------------


def book_epvm_cost(spec: TaskSpec, n: NodeRecord) -> float:
    """Cube's E-PVM as printed in the book, cpu terms included."""
    jobs_now, jobs_next = n.task_count / MAX_JOBS, (n.task_count + 1) / MAX_JOBS
    cpu_load = n.stats.cpu_percent / 100
    mem_allocated = n.stats.memory_used + n.allocated_memory
    mem_pct = mem_allocated / n.memory
    new_mem_pct = (mem_allocated + spec.memory) / n.memory
    mem_cost = LIEB**new_mem_pct + LIEB**jobs_next - LIEB**mem_pct - LIEB**jobs_now
    cpu_cost = LIEB**cpu_load + LIEB**jobs_next - LIEB**cpu_load - LIEB**jobs_now
    return float(mem_cost + cpu_cost)


def test_epvm_picks_the_idle_node_where_the_book_cannot_tell() -> None:
    # given two nodes identical except that node-1 measures 90% cpu and node-2 5%
    busy = node("node-1", stats=NodeStats(cpu_percent=90.0))
    idle = node("node-2", stats=NodeStats(cpu_percent=5.0))
    spec = task(cpu=1.0, memory=256 * MI)
    # and the book's formula scores them the same, so it would fall back to node-1 by name
    assert book_epvm_cost(spec, busy) == pytest.approx(book_epvm_cost(spec, idle), abs=1e-12)
    # when E-PVM places the task
    result = place(Epvm(), spec, [busy, idle])
    # then it goes to the idle node
    assert placed_on(result) == "node-2"


def test_epvm_still_weighs_cpu_load_for_a_task_that_requests_no_cpu() -> None:
    # given the same busy and idle nodes
    busy = node("node-1", stats=NodeStats(cpu_percent=90.0))
    idle = node("node-2", stats=NodeStats(cpu_percent=5.0))
    # when placing a task with no cpu request
    # then load still steers it to the idle node
    assert placed_on(place(Epvm(), task(), [busy, idle])) == "node-2"


def test_epvm_prefers_the_node_with_less_reserved() -> None:
    # given node-1 has 3 of 4 cpus and 3 tasks reserved, node-2 has one task
    loaded = node("node-1", allocated_cpu=3.0, allocated_memory=2 * GI, task_count=3)
    light = node("node-2", allocated_cpu=0.5, allocated_memory=256 * MI, task_count=1)
    # when placing
    # then the lighter node wins
    assert placed_on(place(Epvm(), task(cpu=0.5, memory=128 * MI), [loaded, light])) == "node-2"


def test_epvm_scores_a_memory_heavier_node_worse() -> None:
    # given two nodes that differ only in measured memory use
    heavy = node("node-1", stats=NodeStats(memory_used=3 * GI))
    light = node("node-2", stats=NodeStats(memory_used=GI))
    # when scoring
    scores = Epvm().score(task(memory=512 * MI), [heavy, light])
    # then the heavier node costs more
    assert scores["node-1"] > scores["node-2"]


def test_epvm_counts_reservations_not_yet_visible_in_measurements() -> None:
    # given node-1 measures idle but has 3.5 cpus reserved for tasks still starting
    reserved = node("node-1", allocated_cpu=3.5)
    measured = node("node-2", stats=NodeStats(cpu_percent=50.0))
    # when scoring
    scores = Epvm().score(task(cpu=0.5), [reserved, measured])
    # then the reservations count as load
    assert scores["node-1"] > scores["node-2"]


def test_epvm_breaks_ties_by_node_name() -> None:
    # given identical nodes listed in reverse order
    nodes = [node("node-b"), node("node-a")]
    # when placing
    # then the first name wins
    assert placed_on(place(Epvm(), task(cpu=1.0), nodes)) == "node-a"


def test_epvm_copes_with_a_node_reporting_zero_capacity() -> None:
    # given a node reporting no cpus or memory, and a task that asks for neither
    empty = node("node-1", cpus=0.0, memory=0)
    # when scoring
    scores = Epvm().score(task(), [empty])
    # then the score is a finite number
    assert math.isfinite(scores["node-1"])


def test_epvm_scores_an_absurd_report_worst_without_overflowing() -> None:
    # given node-1 reports 1 byte of memory and 4Gi in use, node-2 is ordinary but busy
    odd = node("node-1", memory=1, stats=NodeStats(memory_used=4 * GI))
    busy = node("node-2", allocated_cpu=3.0, stats=NodeStats(cpu_percent=95.0))
    # when scoring a task
    scores = Epvm().score(task(cpu=0.5), [odd, busy])
    # then the odd node is finite but worse than any ordinary one
    assert math.isfinite(scores["node-1"])
    assert scores["node-1"] > scores["node-2"]


# --- NoFit reasons --------------------------------------------------------------------


def test_no_fit_on_an_empty_cluster_says_no_worker_joined() -> None:
    # given no nodes
    # when placing
    result = place(Epvm(), task(cpu=1.0), [])
    # then the reason says so
    assert isinstance(result, NoFit) and result.unplaced.kind == NoFitKind.NO_NODES
    assert reason(result, task(cpu=1.0)) == "no worker has joined yet"


def test_no_fit_when_every_node_is_down_names_them() -> None:
    # given two down nodes
    nodes = [node("node-2", status=NodeStatus.DOWN), node("node-1", status=NodeStatus.DOWN)]
    # when placing
    result = place(RoundRobin(), task(cpu=1.0), nodes)
    # then each node is named as down
    assert reason(result, task(cpu=1.0)) == "no node can take 1 cpu: node-1 is down, node-2 is down"


def test_no_fit_for_a_big_task_lists_each_nodes_free_amount() -> None:
    # given one node short of cpu, one short of memory and disk, and one down
    nodes = [
        node("node-1", cpus=2.0, allocated_cpu=1.5),
        node("node-2", memory=GI, allocated_memory=GI - 32 * MI, disk=GI, allocated_disk=GI),
        node("node-3", status=NodeStatus.DOWN),
    ]
    # when placing a task for 2 cpus, 64Mi memory and 512Mi disk
    big = task(cpu=2.0, memory=64 * MI, disk=512 * MI)
    result = place(Epvm(), big, nodes)
    # then the reason says what each node lacks
    assert reason(result, big) == (
        "no node can take 2 cpus, 64Mi memory, 512Mi disk: "
        "node-1 has 0.5 cpus free, node-2 has 32Mi memory, 0B disk free, node-3 is down"
    )


def test_no_fit_reason_is_bounded_on_a_large_cluster() -> None:
    # given many full nodes
    nodes = [node(f"node-{i:02d}", allocated_cpu=4.0) for i in range(12)]
    # when placing
    result = place(Epvm(), task(cpu=1.0), nodes)
    # then only a few are named and the rest are counted
    said = reason(result, task(cpu=1.0))
    assert said.count("has 0 cpus free") == MAX_REASON_NODES
    assert said.endswith(f"and {12 - MAX_REASON_NODES} more")


# --- make_scheduler -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [("epvm", Epvm), ("roundrobin", RoundRobin)])
def test_make_scheduler_builds_each_known_scheduler(name: str, kind: type) -> None:
    # given a known name
    # when building
    scheduler = make_scheduler(name)
    # then it is that scheduler
    assert isinstance(scheduler, kind)
    assert scheduler.name == name


def test_make_scheduler_gives_a_fresh_round_robin_each_time() -> None:
    # given one round robin that has already picked
    first = make_scheduler("roundrobin")
    place(first, task(), [node("node-1"), node("node-2")])
    # when building another
    second = make_scheduler("roundrobin")
    # then its cursor starts over
    assert placed_on(place(second, task(), [node("node-1"), node("node-2")])) == "node-1"


def test_make_scheduler_rejects_an_unknown_name_naming_the_valid_ones() -> None:
    # given an unknown name
    # when building
    with pytest.raises(ValueError) as caught:
        make_scheduler("firstfit")
    # then the error names the choices
    assert "'firstfit'" in str(caught.value)
    for name in SCHEDULERS:
        assert name in str(caught.value)


def test_the_default_scheduler_is_epvm_and_known() -> None:
    assert DEFAULT_SCHEDULER == "epvm"
    assert DEFAULT_SCHEDULER in SCHEDULERS


# --- allocate ---------------------------------------------------------------------------


def test_allocate_reserves_on_a_copy() -> None:
    # given an empty node
    before = node("node-1")
    spec = task(cpu=1.5, memory=256 * MI, disk=GI)
    # when a task is allocated
    during = allocate(before, spec)
    # then its resources and count are reserved, on a copy
    assert (during.allocated_cpu, during.allocated_memory, during.allocated_disk) == (
        1.5,
        256 * MI,
        GI,
    )
    assert during.task_count == 1
    assert before.task_count == 0


# --- the capacity invariant -----------------------------------------------------------


def release(node: NodeRecord, spec: TaskSpec) -> NodeRecord:
    """A task ending on the node, as the store's holdings model it: its resources back."""
    cpu = node.allocated_cpu - spec.cpu
    return node.model_copy(
        update={
            "allocated_cpu": cpu if cpu > 1e-9 else 0.0,
            "allocated_memory": max(0, node.allocated_memory - spec.memory),
            "allocated_disk": max(0, node.allocated_disk - spec.disk),
            "task_count": max(0, node.task_count - 1),
        }
    )


specs = st.builds(
    task,
    cpu=st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0]), st.floats(0, 5)),
    memory=st.integers(0, 2 * GI),
    disk=st.integers(0, 20 * GI),
)
node_lists: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.builds(
        dict,
        cpus=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
        memory=st.integers(0, 4 * GI),
        disk=st.integers(0, 40 * GI),
        status=st.sampled_from(list(NodeStatus)),
        stats=st.builds(NodeStats, cpu_percent=st.floats(0, 100), memory_used=st.integers(0, GI)),
    ),
    min_size=1,
    max_size=4,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("place"), specs, st.sampled_from(SCHEDULERS)),
        st.tuples(st.just("release"), st.integers(0, 100)),
        st.tuples(st.just("stray-release"), st.integers(0, 3), specs),
        st.tuples(st.just("toggle"), st.integers(0, 3)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(node_fields=node_lists, ops=operations)
def test_no_node_is_ever_over_committed(
    node_fields: list[dict[str, Any]], ops: list[tuple[Any, ...]]
) -> None:
    # given a few random nodes and both schedulers
    nodes = {f"node-{i}": node(f"node-{i}", **f) for i, f in enumerate(node_fields)}
    names = sorted(nodes)
    schedulers: dict[str, Scheduler] = {name: make_scheduler(name) for name in SCHEDULERS}
    running: list[tuple[str, TaskSpec]] = []
    # when placing, allocating, releasing and flipping node status at random
    for op in ops:
        if op[0] == "place":
            _, spec, scheduler_name = op
            result = place(schedulers[scheduler_name], spec, list(nodes.values()))
            if isinstance(result, Placement):
                assert fits(spec, nodes[result.node])
                nodes[result.node] = allocate(nodes[result.node], spec)
                running.append((result.node, spec))
            else:
                assert filter_candidates(spec, list(nodes.values())) == []
        elif op[0] == "release" and running:
            name, spec = running.pop(op[1] % len(running))
            nodes[name] = release(nodes[name], spec)
        elif op[0] == "stray-release":
            name = names[op[1] % len(names)]
            nodes[name] = release(nodes[name], op[2])
        elif op[0] == "toggle":
            name = names[op[1] % len(names)]
            flipped = (
                NodeStatus.DOWN if nodes[name].status is NodeStatus.READY else NodeStatus.READY
            )
            nodes[name] = nodes[name].model_copy(update={"status": flipped})
        # then, after every step, no node holds more than it has, and nothing is negative
        for n in nodes.values():
            assert 0.0 <= n.allocated_cpu <= n.cpus + 1e-6
            assert 0 <= n.allocated_memory <= n.memory
            assert 0 <= n.allocated_disk <= n.disk
            assert n.task_count >= 0


# --- constraints, cordons, caps, spread ------------------------------------------------


def labelled(name: str, **labels: str) -> NodeRecord:
    return node(name, labels=labels)


def test_constraints_pick_nodes_by_label_equality_membership_and_inequality() -> None:
    nodes = [labelled("n1", zone="a", disk="ssd"), labelled("n2", zone="b"), labelled("n3")]
    scheduler = make_scheduler("spread")

    def where(constraints: Any) -> set[str]:
        found = set()
        for _ in range(6):
            result = place(scheduler, TaskSpec(name="x", image="i", constraints=constraints), nodes)
            if isinstance(result, Placement):
                found.add(result.node)
        return found

    assert where({"zone": "a"}) == {"n1"}
    assert where({"zone": ["a", "b"]}) <= {"n1", "n2"}
    assert where([{"key": "zone", "op": "!=", "values": ["a"]}]) <= {"n2", "n3"}
    assert where([{"key": "disk", "op": "exists"}]) == {"n1"}
    assert where([{"key": "zone", "op": "not exists"}]) == {"n3"}


def test_a_constraint_no_node_meets_is_named_in_the_reason() -> None:
    spec = TaskSpec(name="x", image="i", constraints={"zone": "c"})
    result = place(make_scheduler("epvm"), spec, [labelled("n1", zone="a"), labelled("n2")])
    assert (
        reason(result, spec)
        == "no node can take task 'x': n1 fails zone == c (zone=a), n2 fails zone == c"
    )


def test_cordoned_nodes_and_full_nodes_take_nothing() -> None:
    cordoned = node("n1", schedulable=False)
    busy = node("n2", task_count=3)
    context = PlacementContext(max_tasks_per_node=3)
    result = place(make_scheduler("epvm"), task(), [cordoned, busy], context)
    said = reason(result, task())
    assert "n1 is cordoned" in said and "n2 has 3 tasks (the cap is 3)" in said


def test_binpack_fills_the_fullest_node_and_spread_the_emptiest() -> None:
    nodes = [node("n1", allocated_cpu=1.5, task_count=3), node("n2")]
    assert placed_on(place(make_scheduler("binpack"), task(cpu=0.25), nodes)) == "n1"
    assert placed_on(place(make_scheduler("spread"), task(cpu=0.25), nodes)) == "n2"


def test_a_task_spread_over_zones_goes_to_the_zone_with_fewest_peers() -> None:
    # given zone a already holds two of the service's tasks, zone b none
    nodes = [labelled("a1", zone="a"), labelled("a2", zone="a"), labelled("b1", zone="b")]
    context = PlacementContext(peers={"a1": 1, "a2": 1})
    spec = TaskSpec(name="web", image="i", spread="zone")
    # then even the bin-packer puts the next one in zone b
    assert placed_on(place(make_scheduler("binpack"), spec, nodes, context)) == "b1"


zones = st.sampled_from(["a", "b", "c"])
rules = st.one_of(
    st.builds(lambda z: {"zone": z}, zones),
    st.builds(lambda zs: {"zone": sorted(set(zs))}, st.lists(zones, min_size=1, max_size=3)),
    st.builds(lambda z: [{"key": "zone", "op": "!=", "values": [z]}], zones),
    st.just([{"key": "ssd", "op": "exists"}]),
    st.just({}),
)


@settings(max_examples=200, deadline=None)
@given(
    layout=st.lists(st.tuples(zones, st.booleans(), st.booleans()), min_size=1, max_size=5),
    cap=st.one_of(st.none(), st.integers(1, 4)),
    ops=st.lists(
        st.tuples(specs, rules, st.sampled_from(SCHEDULERS), st.integers(0, 9)), max_size=30
    ),
)
def test_every_placement_keeps_constraints_cordons_caps_and_capacity(
    layout: list[tuple[str, bool, bool]], cap: int | None, ops: list[tuple[Any, ...]]
) -> None:
    # given labelled nodes, some cordoned, and a per-node cap
    nodes = {
        f"n{i}": node(
            f"n{i}",
            cpus=2.0,
            memory=2 * GI,
            disk=20 * GI,
            schedulable=open_,
            labels={"zone": zone, **({"ssd": "yes"} if ssd else {})},
        )
        for i, (zone, open_, ssd) in enumerate(layout)
    }
    context = PlacementContext(max_tasks_per_node=cap)
    schedulers = {name: make_scheduler(name) for name in SCHEDULERS}
    # when tasks with random constraints are placed, and some toggle a cordon
    for spec, constraints, scheduler_name, toggle in ops:
        constrained = spec.model_copy(
            update={
                "constraints": TaskSpec(name="x", image="i", constraints=constraints).constraints
            }
        )
        result = place(schedulers[scheduler_name], constrained, list(nodes.values()), context)
        if isinstance(result, Placement):
            chosen = nodes[result.node]
            # then the chosen node meets every rule, is open, under the cap, and has room
            assert all(holds(rule, chosen.labels) for rule in constrained.rules())
            assert chosen.schedulable and (cap is None or chosen.task_count < cap)
            nodes[result.node] = allocate(chosen, constrained)
            assert nodes[result.node].allocated_cpu <= chosen.cpus + 1e-6
            assert nodes[result.node].allocated_memory <= chosen.memory
        name = f"n{toggle % len(nodes)}"
        if toggle > 6:
            nodes[name] = nodes[name].model_copy(
                update={"schedulable": not nodes[name].schedulable}
            )


def test_epvm_keeps_spreading_past_hundreds_of_tasks_per_node() -> None:
    # given ten equal nodes (LIEB^(tasks/4) once overflowed past 256 tasks a node, and every
    # node then tied, so all further tasks piled onto the first name)
    nodes = {f"n{i}": node(f"n{i}", cpus=64.0, memory=1024 * GI) for i in range(10)}
    scheduler = Epvm()
    # when 3,000 request-less tasks are placed
    for _ in range(3000):
        chosen = placed_on(place(scheduler, task(), list(nodes.values())))
        nodes[chosen] = allocate(nodes[chosen], task())
    # then they stay even
    counts = [n.task_count for n in nodes.values()]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("name", SCHEDULERS)
def test_a_decision_reads_the_constraints_once_and_checks_each_node_once(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 50 nodes, half of them in zone a, and a task constrained to zone a by a mapping
    nodes = [node(f"node-{i:02}", labels={"zone": "a" if i % 2 else "b"}) for i in range(50)]
    spec = TaskSpec(name="web", image="nginx:alpine", constraints={"zone": "a"})
    rules_calls: list[int] = []
    checks: list[str] = []
    original_rules, original_eligible = TaskSpec.rules, fit.eligible
    monkeypatch.setattr(TaskSpec, "rules", lambda s: rules_calls.append(1) or original_rules(s))
    monkeypatch.setattr(
        fit,
        "eligible",
        lambda s, n, *a, **k: checks.append(n.name) or original_eligible(s, n, *a, **k),
    )
    # when the task is placed, under a cap
    result = place(make_scheduler(name), spec, nodes, PlacementContext(max_tasks_per_node=10))
    # then it went to zone a, its rules were built once and every node checked once
    assert isinstance(result, Placement) and int(result.node[-2:]) % 2 == 1
    assert len(rules_calls) == 1
    assert sorted(checks) == sorted(n.name for n in nodes)


def test_a_rise_too_small_for_a_float_costs_nothing_instead_of_failing() -> None:
    # a node whose load rises by less than a float can hold (no memory at all, say): the
    # rise rounds to zero, whose logarithm does not exist (found by the property test)
    from manager.scheduler import _log_growth

    assert _log_growth(0.0, 5e-324) == -math.inf
    assert _log_growth(0.0, 1.0) < 0.0
