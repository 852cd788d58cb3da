"""Where a task runs: candidate filtering, the round-robin and E-PVM schedulers, placement."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from manager.fit import CPU_EPSILON as CPU_EPSILON
from manager.fit import NO_CONTEXT, PlacementContext, lowest, over_cap
from manager.fit import SCORING_DEFAULT_CPU as SCORING_DEFAULT_CPU
from manager.fit import SCORING_DEFAULT_MEMORY as SCORING_DEFAULT_MEMORY
from manager.fit import filter_candidates as filter_candidates
from manager.fit import fits as fits
from manager.packing import Binpack, Spread
from manager.unplaced import explain
from manager.volumes import pin
from shared.models import NodeRecord, TaskSpec
from shared.placement import Unplaced

LIEB = 1.53960071783900203869
"""E-PVM's base: the cost of a resource grows as LIEB to the power of its load."""

MAX_JOBS = 4.0
"""E-PVM's task count at which the task-count term reaches one power of LIEB."""


class Scheduler(Protocol):
    """The book's three phases: which nodes could take a task, how good each is, which wins."""

    name: str

    def select_candidates(self, spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        """The nodes that could run the task now."""
        ...

    def score(self, spec: TaskSpec, candidates: Sequence[NodeRecord]) -> dict[str, float]:
        """A score per candidate name; lower is better."""
        ...

    def pick(self, scores: dict[str, float], candidates: list[NodeRecord]) -> NodeRecord:
        """The candidate the task goes to."""
        ...


@dataclass(frozen=True)
class Placement:
    """The node a task was placed on."""

    node: str


@dataclass(frozen=True)
class NoFit:
    """No node can take the task now; `unplaced` says what is short where, as data."""

    unplaced: Unplaced


class RoundRobin:
    """Hands each task to the next candidate after the last one picked, in node-name order."""

    name = "roundrobin"

    def __init__(self) -> None:
        # The cursor is a node name rather than an index, so it stays meaningful when
        # nodes join, leave or stop being candidates between placements.
        self.last: str | None = None

    def select_candidates(self, spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        """The nodes that fit the task."""
        return filter_candidates(spec, nodes)

    def score(self, spec: TaskSpec, candidates: Sequence[NodeRecord]) -> dict[str, float]:
        """How many steps past the cursor each candidate is, wrapping around."""
        names = sorted(node.name for node in candidates)
        last = self.last
        start = next((i for i, name in enumerate(names) if last is None or name > last), 0)
        return {name: float((i - start) % len(names)) for i, name in enumerate(names)}

    def pick(self, scores: dict[str, float], candidates: list[NodeRecord]) -> NodeRecord:
        """The nearest candidate after the cursor; moves the cursor to it."""
        chosen = lowest(scores, candidates)
        self.last = chosen.name
        return chosen


_LN_LIEB = math.log(LIEB)


def _log_growth(before: float, after: float) -> float:
    """ln(LIEB^after - LIEB^before): the rise E-PVM charges, in log space, so that it never
    overflows (LIEB^(tasks/4) passes a float's range near 6,600 tasks on a node)."""
    if math.isnan(before) or math.isnan(after):
        return math.inf  # a node reporting nonsense is the worst choice
    before, after = max(before, 0.0), max(after, 0.0)
    if after <= before:
        return -math.inf
    rise = (after - before) * _LN_LIEB
    if rise <= 0.0:  # a rise too small for a float (loads near zero, e.g. no memory at all)
        return -math.inf
    # ln(e^rise - 1) is rise itself, to a float's precision, once rise passes ~40.
    return before * _LN_LIEB + (rise if rise > 40 else math.log(math.expm1(rise)))


def _log_sum(*logs: float) -> float:
    """ln(sum(exp(x) for x in logs)), computed without overflow."""
    top = max(logs)
    if math.isinf(top):
        return top
    return top + math.log(sum(math.exp(x - top) for x in logs))


def epvm_cost(spec: TaskSpec, node: NodeRecord) -> float:
    """The natural log of E-PVM's marginal cost of placing the task on the node (see `Epvm`);
    the log keeps the order of costs and stays finite however many tasks a node holds."""
    jobs = _log_growth(node.task_count / MAX_JOBS, (node.task_count + 1) / MAX_JOBS)
    cpu_demand = spec.cpu or SCORING_DEFAULT_CPU
    memory_demand = spec.memory or SCORING_DEFAULT_MEMORY
    measured_cpu = node.stats.cpu_percent / 100
    if node.cpus > 0:
        cpu_load = max(measured_cpu, node.allocated_cpu / node.cpus)
        new_cpu_load = cpu_load + cpu_demand / node.cpus
    else:
        cpu_load = new_cpu_load = measured_cpu
    if node.memory > 0:
        memory_load = max(node.stats.memory_used, node.allocated_memory) / node.memory
        new_memory_load = memory_load + memory_demand / node.memory
    else:
        memory_load = new_memory_load = 0.0
    # memory cost + cpu cost, each with the task-count term: two jobs terms in all.
    return _log_sum(
        _log_growth(memory_load, new_memory_load),
        _log_growth(cpu_load, new_cpu_load),
        jobs + math.log(2),
    )


class Epvm:
    """E-PVM: the candidate whose load grows least, in LIEB's exponent, from taking the task.

    With j = task_count, a node's cost for a task is

        memCost = LIEB^newMemLoad - LIEB^memLoad + LIEB^((j+1)/maxJobs) - LIEB^(j/maxJobs)
        cpuCost = LIEB^newCpuLoad - LIEB^cpuLoad + LIEB^((j+1)/maxJobs) - LIEB^(j/maxJobs)
        score   = memCost + cpuCost                      (lower is better)

    where cpuLoad = max(cpu_percent / 100, allocated_cpu / cpus), newCpuLoad = cpuLoad +
    spec.cpu / cpus, memLoad = max(memory_used, allocated_memory) / memory and newMemLoad =
    memLoad + spec.memory / memory; LIEB = 1.5396..., maxJobs = 4.

    The book writes cpuCost = LIEB^cpuLoad + ... - LIEB^cpuLoad - ..., so the two load terms
    cancel and a node at 90% cpu scores the same as an idle one: cpu never steers placement.
    Raising LIEB to the load *after* the task makes the cost grow with the load already
    there, so busy nodes cost more. Loads take the larger of measured use and reservations:
    either alone can understate how full a node is, and the book's sum of the two counts a
    running task twice. A task that requests no cpu or
    memory is scored as if it asked for 0.1 core and 200Mi, as Kubernetes does, so load
    still steers it; the fit check uses the real request.
    """

    name = "epvm"

    def select_candidates(self, spec: TaskSpec, nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
        """The nodes that fit the task."""
        return filter_candidates(spec, nodes)

    def score(self, spec: TaskSpec, candidates: Sequence[NodeRecord]) -> dict[str, float]:
        """The E-PVM cost of each candidate."""
        return {node.name: epvm_cost(spec, node) for node in candidates}

    def pick(self, scores: dict[str, float], candidates: list[NodeRecord]) -> NodeRecord:
        """The cheapest candidate; ties go to the first name."""
        return lowest(scores, candidates)


_FACTORIES: dict[str, Callable[[], Scheduler]] = {
    "epvm": Epvm,
    "roundrobin": RoundRobin,
    "binpack": Binpack,
    "spread": Spread,
}

SCHEDULERS: tuple[str, ...] = tuple(sorted(_FACTORIES))
"""The names `make_scheduler` accepts."""

DEFAULT_SCHEDULER = "epvm"
"""The scheduler the manager uses unless told otherwise."""


def make_scheduler(name: str) -> Scheduler:
    """A new scheduler by name: epvm, roundrobin, binpack or spread."""
    factory = _FACTORIES.get(name.strip().lower())
    if factory is None:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    return factory()


def spread_domain(
    spec: TaskSpec,
    candidates: list[NodeRecord],
    nodes: Sequence[NodeRecord],
    context: PlacementContext,
) -> list[NodeRecord]:
    """Candidates in the label value (e.g. zone) holding the fewest of the task's peers."""
    if spec.spread is None or not candidates:
        return candidates
    label = spec.spread
    load: dict[str, int] = {}
    for node in nodes:
        value = node.labels.get(label, "")
        load[value] = load.get(value, 0) + context.peers.get(node.name, 0)
    fewest = min(load[node.labels.get(label, "")] for node in candidates)
    return [node for node in candidates if load[node.labels.get(label, "")] == fewest]


def place(
    scheduler: Scheduler,
    spec: TaskSpec,
    nodes: Sequence[NodeRecord],
    context: PlacementContext = NO_CONTEXT,
) -> Placement | NoFit:
    """Filter (the scheduler's candidates, then the task cap), spread, score, pick.

    Each node's fit is checked once, by the candidate phase; the context adds only the cap.
    A task whose volumes a node holds is placed there or nowhere (manager/volumes.py).
    """
    pinned = pin(spec, nodes, context.volumes)
    if pinned.unplaced is not None:
        return NoFit(pinned.unplaced)
    nodes = pinned.nodes
    candidates = [
        node for node in scheduler.select_candidates(spec, nodes) if over_cap(node, context) is None
    ]
    candidates = spread_domain(spec, candidates, nodes, context)
    if not candidates:
        why = explain(spec, nodes, context)
        return NoFit(why.model_copy(update={"volumes": pinned.held}) if pinned.held else why)
    chosen = scheduler.pick(scheduler.score(spec, candidates), candidates)
    return Placement(node=chosen.name)


def allocate_at(free: dict[str, NodeRecord], name: str, spec: TaskSpec) -> None:
    """Reserve the task's resources on the named node in `free`, and its fixed host ports
    also on every node that advertises the same address (they share one port space)."""
    chosen = free[name] = allocate(free[name], spec)
    wanted = spec.fixed_host_ports()
    if not wanted or chosen.address is None:
        return
    for other in list(free.values()):
        if other.address == chosen.address and other.name != name:
            ports = tuple(sorted({*other.reserved_ports, *wanted}))
            free[other.name] = other.model_copy(update={"reserved_ports": ports})


def allocate(node: NodeRecord, spec: TaskSpec) -> NodeRecord:
    """The node with the task's resources reserved; `place` decides that they fit."""
    return node.model_copy(
        update={
            "allocated_cpu": node.allocated_cpu + spec.cpu,
            "allocated_memory": node.allocated_memory + spec.memory,
            "allocated_disk": node.allocated_disk + spec.disk,
            "task_count": node.task_count + 1,
            "reserved_ports": tuple(sorted((*node.reserved_ports, *spec.fixed_host_ports()))),
        }
    )
