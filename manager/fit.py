"""Whether a node can take a task: the candidate filter every scheduler shares.

A candidate is ready, its engine up, schedulable (not cordoned), under the per-node task
cap, satisfies the task's label constraints, and has the cpu, memory and disk free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from manager.constraints import failed_rule
from shared.models import NodeRecord, NodeStatus, TaskSpec
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


NO_CONTEXT = PlacementContext()


def ineligible(
    spec: TaskSpec,
    node: NodeRecord,
    context: PlacementContext = NO_CONTEXT,
    rules: Sequence[Constraint] | None = None,
) -> str | None:
    """Why the node may not take the task whatever its free resources, or None.

    `rules` are `spec.rules()`, for a caller that asks about many nodes: a spec whose
    constraints are a mapping builds them anew on each call.
    """
    if node.status is not NodeStatus.READY:
        return f"{node.name} is {node.status.value}"
    if not node.engine_ok:
        return f"{node.name}'s container engine is down"
    if not node.schedulable:
        return f"{node.name} is cordoned"
    full = over_cap(node, context)
    if full is not None:
        return full
    rule = failed_rule(spec.rules() if rules is None else rules, node.labels)
    if rule is not None:
        have = node.labels.get(rule.key)
        return f"{node.name} fails {rule}" + (f" ({rule.key}={have})" if have is not None else "")
    return None


def over_cap(node: NodeRecord, context: PlacementContext) -> str | None:
    """Why the node is at the context's task cap, or None."""
    cap = context.max_tasks_per_node
    if cap is not None and node.task_count >= cap:
        return f"{node.name} has {node.task_count} tasks (the cap is {cap})"
    return None


def has_room(spec: TaskSpec, node: NodeRecord) -> bool:
    """Whether the node has the task's cpu, memory and disk free."""
    return (
        node.cpus - node.allocated_cpu >= spec.cpu - CPU_EPSILON
        and node.memory - node.allocated_memory >= spec.memory
        and node.disk - node.allocated_disk >= spec.disk
    )


def fits(spec: TaskSpec, node: NodeRecord, rules: Sequence[Constraint] | None = None) -> bool:
    """Whether the node is eligible and has room (without a placement context)."""
    return ineligible(spec, node, rules=rules) is None and has_room(spec, node)


def filter_candidates(spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
    """The nodes that fit the task, in name order; the candidate phase of every scheduler."""
    rules = spec.rules()
    return sorted((node for node in nodes if fits(spec, node, rules)), key=lambda node: node.name)


def lowest(scores: dict[str, float], candidates: Sequence[NodeRecord]) -> NodeRecord:
    if not candidates:
        raise ValueError("there are no candidates to pick from")
    return min(candidates, key=lambda node: (scores.get(node.name, math.inf), node.name))
