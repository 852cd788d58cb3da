"""Why a task could not be placed, as data (`shared.placement.Unplaced`), built from what
each node lacks for it: the candidate filter's answer for every node, counted by filter
and by exhausted dimension as Nomad's AllocMetric does, with the first few nodes kept
whole for the sentence people read (`shared.placement.sentence`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from manager.fit import NO_CONTEXT, PlacementContext, miss
from shared.models import NodeRecord, TaskSpec
from shared.placement import Dimension, NodeFilter, NodeMiss, NoFitKind, Unplaced

MAX_REASON_NODES = 5
"""How many nodes an Unplaced keeps whole (its sentence then says "and N more")."""

KINDS: tuple[str, ...] = tuple(kind.value for kind in NoFitKind)
"""Every kind, most telling first: the label values of the placement metrics."""

_BY_DIMENSION = {
    Dimension.CPU: NoFitKind.INSUFFICIENT_CPU,
    Dimension.MEMORY: NoFitKind.INSUFFICIENT_MEMORY,
    Dimension.DISK: NoFitKind.INSUFFICIENT_DISK,
    Dimension.TASKS: NoFitKind.TASK_CAP,
    Dimension.HOST_PORTS: NoFitKind.HOST_PORTS,
}
_BY_FILTER = {
    NodeFilter.CONSTRAINT: NoFitKind.CONSTRAINTS,
    NodeFilter.CORDONED: NoFitKind.CORDONED,
    NodeFilter.DOWN: NoFitKind.NODES_DOWN,
    NodeFilter.ENGINE_DOWN: NoFitKind.NODES_DOWN,
}


def explain(
    spec: TaskSpec, nodes: Sequence[NodeRecord], context: PlacementContext = NO_CONTEXT
) -> Unplaced:
    """Why none of the nodes can take the task; its kind is the most telling any node shows."""
    if not nodes:
        return Unplaced(kind=NoFitKind.NO_NODES)
    rules = spec.rules()
    misses = [miss(spec, node, context, rules) for node in sorted(nodes, key=lambda n: n.name)]
    return summarize(misses)


def summarize(misses: Sequence[NodeMiss]) -> Unplaced:
    """The counts over every node's miss, and the first few kept whole."""
    filtered: Counter[NodeFilter] = Counter()
    constraints: Counter[str] = Counter()
    dimensions: Counter[Dimension] = Counter()
    exhausted_nodes = 0
    for one in misses:
        if one.filtered is not None:
            filtered[one.filtered] += 1
            if one.constraint is not None:
                constraints[str(one.constraint)] += 1
        if one.exhausted:
            exhausted_nodes += 1
            dimensions.update(one.exhausted)
    found = {_BY_FILTER[f] for f in filtered} | {_BY_DIMENSION[d] for d in dimensions}
    return Unplaced(
        kind=next((kind for kind in NoFitKind if kind in found), NoFitKind.OTHER),
        nodes_evaluated=len(misses),
        nodes_filtered=dict(filtered),
        constraint_filtered=dict(constraints),
        nodes_exhausted=exhausted_nodes,
        dimension_exhausted=dict(dimensions),
        nodes=tuple(misses[:MAX_REASON_NODES]),
    )
