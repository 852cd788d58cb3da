"""Whether a node can take a task: the candidate filter every scheduler shares.

A candidate is ready, its engine up, schedulable (not cordoned), under the per-node task
cap, satisfies the task's label constraints, and has the cpu, memory and disk free, and
every fixed host port the task asks for: none is held at its address (`reserved_ports`,
manager/store.py: by tasks there or on nodes sharing the address, or leftover containers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from manager.constraints import failed_rule
from shared.models import NodeRecord, NodeStatus, TaskSpec
from shared.placement import Dimension, NodeFilter, NodeMiss
from shared.specs import Constraint

CPU_EPSILON = 1e-9
"""Slack for float cores, so 0.1 + 0.2 cores still fit on a node with 0.3 free."""

# Kubernetes scores a pod that requests no cpu or memory as if it asked for 0.1 core and
# 200Mi (pkg/scheduler/util/non_zero.go), for scoring only; without this the marginal cost
# of a request-less task is zero on every node and load would never steer it.
SCORING_DEFAULT_CPU = 0.1
SCORING_DEFAULT_MEMORY = 200 * 1024**2


@dataclass(frozen=True)
class PlacementContext:
    """What placement needs besides the nodes: the task cap and where the task's peers are."""

    max_tasks_per_node: int | None = None
    peers: Mapping[str, int] = field(default_factory=dict)  # node -> tasks of the same group
    volumes: Mapping[str, str] = field(default_factory=dict)  # volume -> the node holding it


NO_CONTEXT = PlacementContext()


def ineligible(
    spec: TaskSpec,
    node: NodeRecord,
    context: PlacementContext = NO_CONTEXT,
    rules: Sequence[Constraint] | None = None,
) -> NodeMiss | None:
    """What keeps the node from the task whatever its free resources, or None.

    `rules` are `spec.rules()`, for a caller that asks about many nodes: a spec whose
    constraints are a mapping builds them anew on each call.
    """
    if node.status is not NodeStatus.READY:
        return NodeMiss(node=node.name, filtered=NodeFilter.DOWN)
    if not node.engine_ok:
        return NodeMiss(node=node.name, filtered=NodeFilter.ENGINE_DOWN)
    if not node.schedulable:
        return NodeMiss(node=node.name, filtered=NodeFilter.CORDONED)
    full = over_cap(node, context)
    if full is not None:
        return full
    rule = failed_rule(spec.rules() if rules is None else rules, node.labels)
    if rule is not None:
        return NodeMiss(
            node=node.name,
            filtered=NodeFilter.CONSTRAINT,
            constraint=rule,
            label=node.labels.get(rule.key),
        )
    return None


def over_cap(node: NodeRecord, context: PlacementContext) -> NodeMiss | None:
    """The node at the context's task cap, as a miss, or None."""
    cap = context.max_tasks_per_node
    if cap is not None and node.task_count >= cap:
        return NodeMiss(
            node=node.name, exhausted=(Dimension.TASKS,), tasks=node.task_count, cap=cap
        )
    return None


def taken_ports(spec: TaskSpec, node: NodeRecord) -> tuple[int, ...]:
    """The fixed host ports the task asks for that a task placed on the node holds."""
    wanted = spec.fixed_host_ports()
    if not wanted or not node.reserved_ports:
        return ()
    return tuple(sorted(set(wanted).intersection(node.reserved_ports)))


def exhausted(spec: TaskSpec, node: NodeRecord) -> tuple[Dimension, ...]:
    """The resources the node has too little of for the task."""
    short = []
    if node.cpus - node.allocated_cpu < spec.cpu - CPU_EPSILON:
        short.append(Dimension.CPU)
    if node.memory - node.allocated_memory < spec.memory:
        short.append(Dimension.MEMORY)
    if node.disk - node.allocated_disk < spec.disk:
        short.append(Dimension.DISK)
    if taken_ports(spec, node):
        short.append(Dimension.HOST_PORTS)
    return tuple(short)


def has_room(spec: TaskSpec, node: NodeRecord) -> bool:
    """Whether the node has the task's cpu, memory, disk and fixed host ports free."""
    return (
        node.cpus - node.allocated_cpu >= spec.cpu - CPU_EPSILON
        and node.memory - node.allocated_memory >= spec.memory
        and node.disk - node.allocated_disk >= spec.disk
        and not taken_ports(spec, node)
    )


def miss(
    spec: TaskSpec,
    node: NodeRecord,
    context: PlacementContext = NO_CONTEXT,
    rules: Sequence[Constraint] | None = None,
) -> NodeMiss:
    """What the node lacks for the task: a filter, or the resources it is short of with
    what it has free (none at all: it fit, and was passed over)."""
    why = ineligible(spec, node, context, rules)
    if why is not None:
        return why
    return NodeMiss(
        node=node.name,
        exhausted=exhausted(spec, node),
        free_cpu=node.cpus - node.allocated_cpu,
        free_memory=node.memory - node.allocated_memory,
        free_disk=node.disk - node.allocated_disk,
        tasks=node.task_count,
        ports=taken_ports(spec, node),
    )


def eligible(spec: TaskSpec, node: NodeRecord, rules: Sequence[Constraint] | None = None) -> bool:
    """Whether the node may take the task whatever its free resources (without a placement
    context): `ineligible` finds nothing, answered without building what it would say."""
    return (
        node.status is NodeStatus.READY
        and node.engine_ok
        and node.schedulable
        and failed_rule(spec.rules() if rules is None else rules, node.labels) is None
    )


def fits(spec: TaskSpec, node: NodeRecord, rules: Sequence[Constraint] | None = None) -> bool:
    """Whether the node is eligible and has room (without a placement context)."""
    return eligible(spec, node, rules) and has_room(spec, node)


def filter_candidates(spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
    """The nodes that fit the task, in name order; the candidate phase of every scheduler."""
    rules = spec.rules()
    return sorted((node for node in nodes if fits(spec, node, rules)), key=lambda node: node.name)


def lowest(scores: dict[str, float], candidates: Sequence[NodeRecord]) -> NodeRecord:
    if not candidates:
        raise ValueError("there are no candidates to pick from")
    return min(candidates, key=lambda node: (scores.get(node.name, math.inf), node.name))
