"""Scheduler decisions: place `--tasks` tasks, one at a time, on `--nodes` simulated nodes.

Pure: no broker, no database. The nodes and tasks are drawn from a seeded random mix
(2 to 64 cpus, 4 GiB a cpu, some load already measured, 2% of the nodes down; tasks of
0 to 2 cpus and 0 to 1 GiB). For each task it times `manager.scheduler.place` (filter,
score, pick: one placement decision), then reserves the task on the chosen node with
`allocate`, as the manager does, so later decisions see a fuller cluster. Reported per
scheduler: median, p99 and max microseconds of CPU time per decision (the thread's own
CPU clock, so other work on the machine does not inflate them; wall-clock figures are
given beside them). Then, as a check of the spread, the same number of tasks that
request nothing go onto 10 equal nodes (the control-plane benchmark's shape): each node
should get a tenth.

    .venv/bin/python -m bench.scheduler [--nodes 1000] [--tasks 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.report import emit, percentile, progress
from manager.scheduler import SCHEDULERS, NoFit, allocate, make_scheduler, place
from shared.models import NodeRecord, NodeStats, NodeStatus, TaskSpec

GIB = 1024**3
MIB = 1024**2


def make_nodes(count: int, rng: random.Random) -> list[NodeRecord]:
    """count nodes of mixed sizes and loads; about 2% of them down."""
    now = datetime.now(UTC)
    nodes = []
    for index in range(count):
        cpus = rng.choice([2, 4, 8, 16, 32, 64])
        memory = cpus * 4 * GIB
        nodes.append(
            NodeRecord(
                name=f"node-{index:05d}",
                status=NodeStatus.DOWN if rng.random() < 0.02 else NodeStatus.READY,
                cpus=float(cpus),
                memory=memory,
                disk=500 * GIB,
                last_heartbeat=now,
                stats=NodeStats(
                    cpu_percent=rng.uniform(0, 60),
                    memory_used=int(memory * rng.uniform(0, 0.5)),
                    disk_used=int(500 * GIB * rng.uniform(0, 0.5)),
                ),
            )
        )
    return nodes


def uniform_nodes(count: int) -> list[NodeRecord]:
    """count identical ready nodes, the shape of the control-plane benchmark's workers."""
    now = datetime.now(UTC)
    stats = NodeStats(cpu_percent=50.0, memory_used=2 * GIB)
    return [
        NodeRecord(
            name=f"node-{index + 1}",
            status=NodeStatus.READY,
            cpus=2.0,
            memory=24 * GIB,
            disk=250 * GIB,
            last_heartbeat=now,
            stats=stats,
        )
        for index in range(count)
    ]


def make_tasks(count: int, rng: random.Random) -> list[TaskSpec]:
    """count task specs with a mix of requests, some asking for nothing."""
    return [
        TaskSpec(
            name=f"task-{index}",
            image="localhost/kube-busybox:latest",
            cpu=rng.choice([0.0, 0.1, 0.25, 0.5, 1.0, 2.0]),
            memory=rng.choice([0, 64 * MIB, 256 * MIB, GIB]),
        )
        for index in range(count)
    ]


def run(name: str, nodes: list[NodeRecord], tasks: list[TaskSpec]) -> dict[str, Any]:
    """Place every task with a fresh scheduler of that name; time each decision."""
    scheduler = make_scheduler(name)
    current = list(nodes)
    index = {node.name: i for i, node in enumerate(current)}
    timings: list[float] = []  # CPU microseconds of this thread per decision
    walls: list[float] = []
    unplaced = 0
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    for spec in tasks:
        started, began = cpu(), wall()
        outcome = place(scheduler, spec, current)
        timings.append((cpu() - started) / 1000)
        walls.append((wall() - began) / 1000)
        if isinstance(outcome, NoFit):
            unplaced += 1
            continue
        at = index[outcome.node]
        current[at] = allocate(current[at], spec)
    counts = [node.task_count for node in current if node.status is NodeStatus.READY]
    return {
        "median_us": round(statistics.median(timings), 1),
        "p99_us": round(percentile(timings, 99), 1),
        "max_us": round(max(timings), 1),
        "decisions_per_cpu_second": round(len(timings) / (sum(timings) / 1e6), 1),
        "wall_median_us": round(statistics.median(walls), 1),
        "wall_p99_us": round(percentile(walls, 99), 1),
        "placed": len(tasks) - unplaced,
        "unplaced": unplaced,
        "tasks_per_ready_node": {"min": min(counts), "max": max(counts)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scheduler", action="append", choices=SCHEDULERS, default=None)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    nodes = make_nodes(args.nodes, rng)
    tasks = make_tasks(args.tasks, rng)
    # The control-plane benchmark's shape: 10 equal nodes, tasks that request nothing.
    # Only the spread matters here: each node should get tasks / 10.
    equal = uniform_nodes(10)
    bare = [
        TaskSpec(name=f"bare-{i}", image="localhost/kube-busybox:latest") for i in range(args.tasks)
    ]
    results = {}
    spread = {}
    for name in args.scheduler or SCHEDULERS:
        progress("%s: %d tasks on %d nodes", name, len(tasks), len(nodes))
        results[name] = run(name, nodes, tasks)
        progress("%s: %s", name, results[name])
        spread[name] = run(name, equal, bare)["tasks_per_ready_node"]
        progress("%s: %d bare tasks on 10 equal nodes: %s", name, len(bare), spread[name])
    emit(
        "scheduler",
        {
            "nodes": args.nodes,
            "tasks": args.tasks,
            "seed": args.seed,
            "schedulers": results,
            "equal_nodes_spread": {"nodes": 10, "tasks": args.tasks, **spread},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
