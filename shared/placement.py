"""Why a task could not be placed, as data: what each node lacked, counted as Nomad's
AllocMetric counts it (nodes evaluated, filtered by which rule, exhausted by which
dimension), and the one sentence people read, rendered from it.

The manager keeps this on the task record (`TaskRecord.unplaced`) beside the sentence
(`TaskRecord.error`); metrics and alerts read the data, people read the sentence, and
nothing parses the sentence back.
"""

from __future__ import annotations

import enum

from pydantic import Field

from shared.specs import Constraint, TaskSpec
from shared.units import format_bytes
from shared.wire import Count, Int64, Name, Port, Text, WireModel


class NoFitKind(enum.StrEnum):
    """What kept a task off every node, most telling first (when nodes fail for different
    reasons, a resource shortage says more about the cluster than a node that is down)."""

    INSUFFICIENT_CPU = "insufficient_cpu"
    INSUFFICIENT_MEMORY = "insufficient_memory"
    INSUFFICIENT_DISK = "insufficient_disk"
    HOST_PORTS = "host_ports"  # a host port the task asks for is taken on a node
    CONSTRAINTS = "constraints"  # a node's labels break the task's constraints
    TASK_CAP = "task_cap"  # a node holds the manager's most tasks per node
    CORDONED = "cordoned"
    NODES_DOWN = "nodes_down"  # a node, or its container engine, is down
    NO_NODES = "no_nodes"  # no worker has joined yet
    VOLUMES_APART = "volumes_apart"  # the task's volumes are held by different nodes
    OTHER = "other"  # a node fit yet was passed over


class NodeFilter(enum.StrEnum):
    """Why a node may not take the task whatever its free resources."""

    DOWN = "down"
    ENGINE_DOWN = "engine_down"
    CORDONED = "cordoned"
    CONSTRAINT = "constraint"


class Dimension(enum.StrEnum):
    """A resource a node can run out of."""

    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    TASKS = "tasks"  # the per-node task cap
    HOST_PORTS = "host_ports"  # a fixed host port the task asks for


class NodeMiss(WireModel):
    """What one node lacked for the task: a filter, or the dimensions it had too little of."""

    node: Name
    filtered: NodeFilter | None = None
    constraint: Constraint | None = Field(
        default=None, description="the rule the node's labels break"
    )
    label: Text | None = Field(default=None, description="the node's value of the rule's key")
    exhausted: tuple[Dimension, ...] = ()
    free_cpu: float = 0.0
    free_memory: Int64 = 0
    free_disk: Int64 = 0
    tasks: Count = 0
    cap: Count | None = Field(default=None, description="the task cap, when it was reached")
    ports: tuple[Port, ...] = Field(
        default=(), description="host ports the task asks for that a task on the node holds"
    )


class Unplaced(WireModel):
    """Why no node could take a pending task, when the manager last tried."""

    kind: NoFitKind
    nodes_evaluated: Count = 0
    nodes_filtered: dict[NodeFilter, Count] = Field(default_factory=dict)
    constraint_filtered: dict[Text, Count] = Field(
        default_factory=dict, description="nodes each constraint filtered out"
    )
    nodes_exhausted: Count = 0
    dimension_exhausted: dict[Dimension, Count] = Field(
        default_factory=dict, description="nodes short of each resource"
    )
    nodes: tuple[NodeMiss, ...] = Field(
        default=(), description="the first few nodes by name, each with what it lacked"
    )
    volumes: dict[Name, Name] = Field(
        default_factory=dict,
        description="the task's volumes already held, each with its node: only that node"
        " was evaluated (docs/volumes.md)",
    )


def _ports(ports: tuple[int, ...]) -> str:
    """`host port 8080`, `host ports 80, 443`."""
    return ("host port " if len(ports) == 1 else "host ports ") + ", ".join(map(str, ports))


def _cpus(amount: float) -> str:
    shown = f"{round(amount, 3):g}"
    return f"{shown} cpu" if shown == "1" else f"{shown} cpus"


def demand(spec: TaskSpec) -> str:
    """What the task asks for, in words: "2 cpus, 1.0Gi memory", or its name."""
    parts = []
    if spec.cpu > 0:
        parts.append(_cpus(spec.cpu))
    if spec.memory > 0:
        parts.append(f"{format_bytes(spec.memory)} memory")
    if spec.disk > 0:
        parts.append(f"{format_bytes(spec.disk)} disk")
    fixed = spec.fixed_host_ports()
    if fixed:
        parts.append(f"{_ports(fixed)}")
    return ", ".join(parts) if parts else f"task {spec.name!r}"


def node_sentence(miss: NodeMiss) -> str:
    """What one node lacked, in words."""
    name = miss.node
    if miss.filtered is NodeFilter.DOWN:
        return f"{name} is down"
    if miss.filtered is NodeFilter.ENGINE_DOWN:
        return f"{name}'s container engine is down"
    if miss.filtered is NodeFilter.CORDONED:
        return f"{name} is cordoned"
    if Dimension.TASKS in miss.exhausted:
        return f"{name} has {miss.tasks} tasks (the cap is {miss.cap})"
    if miss.filtered is NodeFilter.CONSTRAINT:
        rule = miss.constraint
        have = f" ({rule.key}={miss.label})" if rule is not None and miss.label is not None else ""
        return f"{name} fails {rule}{have}"
    short = []
    if Dimension.CPU in miss.exhausted:
        short.append(_cpus(max(0.0, miss.free_cpu)))
    if Dimension.MEMORY in miss.exhausted:
        short.append(f"{format_bytes(max(0, miss.free_memory))} memory")
    if Dimension.DISK in miss.exhausted:
        short.append(f"{format_bytes(max(0, miss.free_disk))} disk")
    taken = f"{_ports(miss.ports)} taken" if Dimension.HOST_PORTS in miss.exhausted else ""
    if not short:
        return f"{name} has {taken}" if taken else f"{name} was passed over"
    return f"{name} has {', '.join(short)} free" + (f" and {taken}" if taken else "")


def sentence(unplaced: Unplaced, spec: TaskSpec) -> str:
    """The reason for people: what each of the first few nodes lacks for the task."""
    if unplaced.volumes:
        return _held_sentence(unplaced)
    if unplaced.kind is NoFitKind.NO_NODES:
        return "no worker has joined yet"
    details = [node_sentence(miss) for miss in unplaced.nodes]
    more = unplaced.nodes_evaluated - len(unplaced.nodes)
    if more > 0:
        details.append(f"and {more} more")
    return f"no node can take {demand(spec)}: {', '.join(details)}"


def _held_sentence(unplaced: Unplaced) -> str:
    """The reason of a task pinned by its volumes: `waiting for node-2, which holds
    volume pgdata`, and what keeps it there when the node is up."""
    by_node: dict[str, list[str]] = {}
    for volume, node in sorted(unplaced.volumes.items()):
        by_node.setdefault(node, []).append(volume)
    if unplaced.kind is NoFitKind.VOLUMES_APART:
        held = "; ".join(f"{node} holds {', '.join(names)}" for node, names in by_node.items())
        return f"its volumes are held by different nodes, and a task runs on one: {held}"
    ((node, names),) = by_node.items()
    noun = "volume" if len(names) == 1 else "volumes"
    waiting = f"waiting for {node}, which holds {noun} {', '.join(names)}"
    if not unplaced.nodes:
        return f"{waiting} ({node} has left the cluster: see kube volume rm --force)"
    miss = unplaced.nodes[0]
    if miss.filtered is NodeFilter.DOWN:
        return waiting
    return f"{waiting}: {node_sentence(miss)}"
