"""A backlog of tasks that fit nowhere must not slow the tasks that fit, nor keep the manager busy.

A manager and `--workers` mock workers on a vhost of their own. First `--blocked` tasks
that no node can take (each asks for `--blocked-cpu` cores, more than any node has) are
submitted at once and left pending. Then the manager is watched idle for `--idle-seconds`
(its CPU over that time, as a share of one core), and then placeable tasks are submitted
at `--rate` a second for `--seconds`, each timed from its publish to its `task.running`
event on kube.events.

    .venv/bin/python -m bench.pending_backlog [--blocked 10000] [--workers 10]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.cluster import ROUND_ERRORS, Cluster, exit_on_sigterm
from bench.driver import Driver, Event, Submission, task_spec
from bench.report import CpuMeter, emit, ms, percentile, progress

IMAGE = "localhost/kube-busybox:latest"
TARGET_P99_MS = 100.0
TARGET_IDLE_CPU = 0.05
"""Of one core: what the manager may spend while nothing but the backlog is there."""


class Seen:
    """The first arrival of each task's events of one key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.at: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if event.key == self.key:
            self.at.setdefault(str(event.body.get("id")), event.at)


def submissions(prefix: str, count: int, rate: float | None, **fields: Any) -> list[Submission]:
    made = (task_spec(f"{prefix}{i}", IMAGE, ["sleep", "300"], **fields) for i in range(count))
    return [
        Submission(s.task_id, s.body, due=i / rate if rate else 0.0) for i, s in enumerate(made)
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the cluster, build the backlog, measure idle CPU, then the steady latency."""
    with Cluster(keep=args.keep) as cluster:
        nodes = [cluster.node(i + 1) for i in range(args.workers)]
        progress("starting a manager and %d mock workers on vhost %s", len(nodes), cluster.vhost)
        cluster.start_manager()
        for node in nodes:
            cluster.start_worker(node, "mock")
        cluster.wait_ready(nodes)
        manager = {"manager": [cluster.pid("manager")]}
        driver = Driver(cluster.url, ["task.pending", "task.running"], window=args.window)
        driver.open()
        try:
            pending, running = Seen("task.pending"), Seen("task.running")
            driver.listeners += [pending, running]
            backlog = submissions(f"{cluster.prefix}-w", args.blocked, None, cpu=args.blocked_cpu)
            wanted = {s.task_id for s in backlog}
            meter = CpuMeter(manager)
            meter.start()
            started = time.perf_counter()
            driver.on_progress = lambda: progress(
                "backlog: %d/%d pending", len(wanted & pending.at.keys()), len(wanted)
            )
            backlogged = driver.submit(backlog, lambda: wanted <= pending.at.keys(), args.timeout)
            filling = {
                "tasks": args.blocked,
                "finished": backlogged,
                "seconds": round(time.perf_counter() - started, 3),
                "cpu_seconds": meter.stop()["manager"],
            }
            progress("backlog: %s", filling)
            # Let the last of the backlog's batches finish before idle is measured.
            driver.wait(lambda: False, args.settle_seconds)
            meter.start()
            driver.wait(lambda: False, args.idle_seconds)
            idle = meter.stop()
            idle_share = idle["manager"] / idle["wall_seconds"] if idle["wall_seconds"] else None
            progress("idle: %s", idle)
            steady = submissions(f"{cluster.prefix}-p", int(args.rate * args.seconds), args.rate)
            wanted = {s.task_id for s in steady}
            meter.start()
            driver.on_progress = lambda: progress(
                "steady: %d/%d running", len(wanted & running.at.keys()), len(wanted)
            )
            finished = driver.submit(
                steady, lambda: wanted <= running.at.keys(), args.seconds + args.timeout
            )
            cpu = meter.stop()
            latencies = [running.at[i] - driver.published[i] for i in wanted & running.at.keys()]
        finally:
            with contextlib.suppress(*ROUND_ERRORS):
                driver.close()
    return {
        "backlog": filling,
        "idle": {
            "seconds": idle["wall_seconds"],
            "manager_cpu_seconds": idle["manager"],
            "manager_cpu_share": round(idle_share, 4) if idle_share is not None else None,
        },
        "steady": {
            "rate": args.rate,
            "tasks": len(wanted),
            "running": len(latencies),
            "finished": finished,
            "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)),
            "max_ms": ms(max(latencies, default=float("nan"))),
            "manager_cpu_seconds": cpu["manager"],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocked", type=int, default=10_000, help="tasks that fit nowhere")
    parser.add_argument("--blocked-cpu", type=float, default=512.0, help="what each asks for")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--window", type=int, default=1000, help="unconfirmed publishes")
    parser.add_argument("--rate", type=float, default=100.0, help="placeable tasks a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--settle-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase")
    parser.add_argument("--keep", action="store_true", help="keep the logs and database")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        results = run(args)
    except ROUND_ERRORS as exc:  # e.g. the broker restarted under the benchmark
        progress("stopped: %r", exc)
        emit("pending-backlog", {"error": repr(exc)})
        return 1
    p99 = results["steady"]["p99_ms"]
    share = results["idle"]["manager_cpu_share"]
    emit(
        "pending-backlog",
        {
            "runtime": "mock",
            "workers": args.workers,
            **results,
            "targets": {"steady_p99_ms": TARGET_P99_MS, "idle_manager_cpu_share": TARGET_IDLE_CPU},
            "meets_target": {
                "steady_p99": p99 is not None and p99 < TARGET_P99_MS,
                "idle_cpu": share is not None and share < TARGET_IDLE_CPU,
            },
        },
    )
    ok = results["backlog"]["finished"] and results["steady"]["finished"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
