"""Two more scorers: bin-pack fills the fullest node first, spread the emptiest.

Both score the node's dominant share after placing the task: the larger of its cpu and
memory fractions, with request-less tasks counted as 0.1 cpu and 200 MiB (as E-PVM does).
Bin-pack keeps whole nodes free for big tasks; spread keeps load even and failures small.
"""

from __future__ import annotations

from collections.abc import Sequence

from manager.fit import (
    SCORING_DEFAULT_CPU,
    SCORING_DEFAULT_MEMORY,
    filter_candidates,
    lowest,
)
from shared.models import NodeRecord, TaskSpec


def share_after(spec: TaskSpec, node: NodeRecord) -> float:
    """The node's dominant resource share once the task is placed on it."""
    cpu = (node.allocated_cpu + (spec.cpu or SCORING_DEFAULT_CPU)) / max(node.cpus, 1e-9)
    memory = (node.allocated_memory + (spec.memory or SCORING_DEFAULT_MEMORY)) / max(node.memory, 1)
    return max(cpu, memory)


class Binpack:
    """Score = -(dominant share after placing): the fullest node that fits wins."""

    name = "binpack"

    def select_candidates(self, spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        return filter_candidates(spec, nodes)

    def score(self, spec: TaskSpec, candidates: Sequence[NodeRecord]) -> dict[str, float]:
        return {node.name: -share_after(spec, node) for node in candidates}

    def pick(self, scores: dict[str, float], candidates: list[NodeRecord]) -> NodeRecord:
        return lowest(scores, candidates)


class Spread:
    """Score = dominant share after placing, then task count: the emptiest node wins."""

    name = "spread"

    def select_candidates(self, spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        return filter_candidates(spec, nodes)

    def score(self, spec: TaskSpec, candidates: Sequence[NodeRecord]) -> dict[str, float]:
        return {node.name: share_after(spec, node) + node.task_count * 1e-6 for node in candidates}

    def pick(self, scores: dict[str, float], candidates: list[NodeRecord]) -> NodeRecord:
        return lowest(scores, candidates)
