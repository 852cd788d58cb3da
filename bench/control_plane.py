"""Control-plane throughput: tasks a second from submit to running, on the mock runtime.

A manager and `--workers` workers (`kube worker --runtime mock`: no containers, so the
broker, the manager and the workers are all that is measured) on a vhost of their own,
with kube's durable quorum queues, persistent messages and publisher confirms. The
driver publishes `--tasks` TaskSpecs at once (up to `--window` unconfirmed) and times
each from its publish to its `task.running` event on kube.events: the rate is tasks
over the time from the first publish to the last running event. Latency at a steady
`--rate` for `--seconds` is measured twice: on the empty cluster before the burst
(steady-empty), and after it, with the burst's tasks still running (steady-loaded).

    .venv/bin/python -m bench.control_plane [--tasks 10000] [--workers 10] [--profile DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.cluster import ROUND_ERRORS, Cluster, exit_on_sigterm
from bench.driver import Driver, Event, Submission, task_spec
from bench.profiling import Profiler
from bench.report import CpuMeter, broker_pid, emit, ms, percentile, progress, server_pids

IMAGE = "localhost/kube-busybox:latest"
TARGET_RATE = 1000.0
TARGET_P99_MS = 100.0


class Tally:
    """Which tasks of a phase reached running (first arrival) or failed, and where."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.running: dict[str, float] = {}
        self.failed: set[str] = set()
        self.nodes: collections.Counter[str] = collections.Counter()
        self.reruns = 0  # running events of a later attempt: a restart or a move
        self.nodes_down: set[str] = set()

    def __call__(self, event: Event) -> None:
        if event.key == "node.down":
            self.nodes_down.add(str(event.body.get("name")))
            return
        task_id = str(event.body.get("id"))
        if task_id not in self.ids:
            return
        if event.key == "task.running":
            if task_id in self.running:
                self.reruns += 1
            else:
                self.running[task_id] = event.at
                self.nodes[str(event.body.get("node"))] += 1
        elif event.key == "task.failed":
            self.failed.add(task_id)

    def done(self) -> bool:
        return len(self.running) + len(self.failed - self.running.keys()) >= len(self.ids)


def phase(
    driver: Driver, name: str, submissions: list[Submission], timeout: float
) -> dict[str, Any]:
    """Submit, wait for every task to run (or fail), and measure."""
    tally = Tally({s.task_id for s in submissions})
    driver.listeners.append(tally)
    driver.on_progress = lambda: progress(
        "%s: published %d, unconfirmed %d, running %d/%d, failed %d",
        name,
        len(tally.ids & driver.published.keys()),
        driver.unconfirmed,
        len(tally.running),
        len(tally.ids),
        len(tally.failed),
    )
    finished = driver.submit(submissions, tally.done, timeout)
    driver.listeners.remove(tally)
    driver.on_progress = None
    published = {i: driver.published[i] for i in tally.ids if i in driver.published}
    latencies = [tally.running[i] - published[i] for i in tally.running]
    first = min(published.values())
    last = max(tally.running.values(), default=first)
    elapsed = last - first
    return {
        "tasks": len(submissions),
        "running": len(tally.running),
        "failed": len(tally.failed),
        "finished": finished,
        "seconds": round(elapsed, 3),
        "tasks_per_second": round(len(tally.running) / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies, default=float("nan"))),
        # Placement spread and trouble: a node called down, tasks run a second time.
        "tasks_per_node": {
            "min": min(tally.nodes.values(), default=0),
            "max": max(tally.nodes.values(), default=0),
        },
        "reruns": tally.reruns,
        "nodes_marked_down": len(tally.nodes_down),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--window", type=int, default=1000, help="unconfirmed publishes")
    parser.add_argument("--rate", type=float, default=100.0, help="steady phase, tasks/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--scheduler", default="epvm", choices=["epvm", "roundrobin"])
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase")
    parser.add_argument("--profile", type=Path, help="py-spy the manager and a worker here")
    parser.add_argument("--keep", action="store_true", help="keep the logs and database")
    parser.add_argument(
        "--store", help="the manager's store URL, e.g. an empty PostgreSQL database's"
    )
    args = parser.parse_args(argv)
    exit_on_sigterm()

    with Cluster(keep=args.keep) as cluster:
        nodes = [cluster.node(i + 1) for i in range(args.workers)]
        progress("starting a manager and %d mock workers on vhost %s", len(nodes), cluster.vhost)
        cluster.start_manager("--scheduler", args.scheduler, store=args.store)
        for node in nodes:
            cluster.start_worker(node, "mock")
        cluster.wait_ready(nodes)
        broker = broker_pid()
        groups = {
            "manager": [cluster.pid("manager")],
            "workers": [cluster.pid(node) for node in nodes],
            "broker": [broker] if broker else [],
            "driver": [os.getpid()],
        }
        if args.store and not args.store.startswith("sqlite:"):
            groups["database"] = partial(server_pids, args.store)
        driver = Driver(
            cluster.url, ["task.running", "task.failed", "node.down"], window=args.window
        )
        driver.open()

        def run(name: str, submissions: list[Submission], timeout: float) -> dict[str, Any]:
            profiler = (
                Profiler(
                    args.profile / name,
                    [("manager", cluster.pid("manager")), ("worker", cluster.pid(nodes[0]))],
                )
                if args.profile
                else contextlib.nullcontext()
            )
            meter = CpuMeter(groups)
            progress("%s: %d tasks", name, len(submissions))
            started = time.perf_counter()
            meter.start()
            with profiler:
                result = phase(driver, name, submissions, timeout)
            result["cpu_seconds"] = meter.stop()
            result["submit_seconds"] = round(driver.last_confirm_at - started, 3)
            progress("%s: %s", name, result)
            return result

        def specs(tag: str, count: int, rate: float | None = None) -> list[Submission]:
            made = (
                task_spec(f"{cluster.prefix}-{tag}{i}", IMAGE, ["sleep", "300"])
                for i in range(count)
            )
            return [
                Submission(s.task_id, s.body, due=i / rate if rate else 0.0)
                for i, s in enumerate(made)
            ]

        count = int(args.rate * args.seconds)
        steady_timeout = args.timeout + args.seconds
        plan = [
            ("steady_empty", "e", args.rate, count, steady_timeout),
            ("burst", "b", None, args.tasks, args.timeout),
            ("steady_loaded", "l", args.rate, count, steady_timeout),
        ]
        phases: dict[str, dict[str, Any]] = {}
        error = None
        try:
            for name, tag, rate, number, timeout in plan:
                phases[name] = run(name.replace("_", "-"), specs(tag, number, rate), timeout)
        except ROUND_ERRORS as exc:  # e.g. the broker restarted under the benchmark
            error = repr(exc)
            progress("stopped: %s", error)
        finally:
            with contextlib.suppress(*ROUND_ERRORS):
                driver.close()

    def meets(name: str, key: str, ok: Callable[[float], bool]) -> bool:
        value = phases.get(name, {}).get(key)
        return value is not None and ok(value)

    emit(
        "control-plane",
        {
            "runtime": "mock",
            "workers": args.workers,
            "scheduler": args.scheduler,
            "window": args.window,
            **({"error": error} if error else {}),
            "burst": phases.get("burst"),
            "steady_empty": {"rate": args.rate, **phases.get("steady_empty", {})},
            "steady_loaded": {
                "rate": args.rate,
                "resident": args.tasks + count,
                **phases.get("steady_loaded", {}),
            },
            "targets": {"tasks_per_second": TARGET_RATE, "steady_p99_ms": TARGET_P99_MS},
            "meets_target": {
                "burst_rate": meets("burst", "tasks_per_second", lambda v: v >= TARGET_RATE),
                "steady_empty_p99": meets("steady_empty", "p99_ms", lambda v: v < TARGET_P99_MS),
                "steady_loaded_p99": meets("steady_loaded", "p99_ms", lambda v: v < TARGET_P99_MS),
            },
        },
    )
    ok = error is None and all(phase["finished"] for phase in phases.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
