"""Failover: SIGKILL a worker running `--tasks` tasks; time until all run on other nodes.

A manager and one worker (the victim) start on a vhost of their own, with kube's
default heartbeat and down-after settings; the tasks are submitted and all run on the
victim. Then `--spares` more workers join, the victim is killed with SIGKILL, and the
benchmark times, from the kill, the victim's `node.down` event and the first and last of
the tasks' `task.running` events on another node. It gives up after `--timeout`
seconds and then says `"all_rescheduled": false` (the exit status is 1). The kill lands
at a random point between two heartbeats, so it runs `--rounds` times.

The default runtime is `mock`: a killed mock worker takes its simulated containers with
it, as a lost machine does, and the figure is the control plane's alone (detection and
rescheduling), not the time the engine needs to start 50 containers. `--runtime docker`
measures the same with real containers; those of the killed worker keep running until
the benchmark removes them.

    .venv/bin/python -m bench.failover [--tasks 50] [--spares 2] [--runtime mock|docker]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.cluster import ROUND_ERRORS, Cluster, exit_on_sigterm
from bench.driver import Driver, Event, task_spec
from bench.report import emit, progress

IMAGE = "localhost/kube-busybox:latest"
TARGET_SECONDS = 10.0


class Placement:
    """Where each task was last reported running, and when it first ran elsewhere."""

    def __init__(self, ids: set[str], victim: str) -> None:
        self.ids = ids
        self.victim = victim
        self.on_victim: set[str] = set()
        self.moved: dict[str, float] = {}  # task id -> first running event off the victim
        self.last_state: dict[str, str] = {}
        self.ready: set[str] = set()
        self.down_at: float | None = None

    def __call__(self, event: Event) -> None:
        body = event.body
        if event.key.startswith("node."):
            if event.key == "node.ready":
                self.ready.add(str(body["name"]))
            elif event.key == "node.down" and body["name"] == self.victim:
                self.down_at = self.down_at or event.at
            return
        task_id = str(body["id"])
        if task_id not in self.ids:
            return
        self.last_state[task_id] = event.key.removeprefix("task.")
        if event.key == "task.running":
            if body.get("node") == self.victim:
                self.on_victim.add(task_id)
            else:
                self.moved.setdefault(task_id, event.at)


def one_round(args: argparse.Namespace) -> dict[str, Any]:
    """Start a cluster, load the victim, kill it, and time the move of its tasks."""
    with Cluster() as cluster:
        victim = cluster.node(1)
        spares = [cluster.node(i + 2) for i in range(args.spares)]
        cluster.start_manager()  # default heartbeat and node-down settings
        cluster.start_worker(victim, args.runtime)
        cluster.wait_ready([victim])
        driver = Driver(cluster.url, ["task.*", "node.ready", "node.down"])
        driver.open()
        try:
            ids = {f"{cluster.prefix}-{i}" for i in range(args.tasks)}
            where = Placement(ids, victim)
            driver.listeners.append(where)
            progress("%d tasks onto %s (%s runtime)", args.tasks, victim, args.runtime)
            submissions = [task_spec(i, IMAGE, ["sleep", "600"]) for i in sorted(ids)]
            if not driver.submit(submissions, lambda: where.on_victim >= ids, 120):
                raise TimeoutError(f"only {len(where.on_victim)} tasks ran on {victim}")
            progress("all on %s; %d spare workers join", victim, len(spares))
            for spare in spares:
                cluster.start_worker(spare, args.runtime)
            if not driver.wait(lambda: where.ready >= set(spares), 120):
                raise TimeoutError(f"spares not ready: {sorted(set(spares) - where.ready)}")
            where.moved.clear()  # only moves after the kill count
            progress("SIGKILL %s (pid %d)", victim, cluster.pid(victim))
            killed_at = time.perf_counter()
            cluster.kill(victim, signal.SIGKILL)
            driver.on_progress = lambda: progress(
                "%.1fs after the kill: node down %s, %d/%d tasks running elsewhere",
                time.perf_counter() - killed_at,
                where.down_at is not None,
                len(where.moved),
                len(ids),
            )
            done = driver.wait(lambda: where.moved.keys() >= ids, args.timeout)
        finally:
            driver.close()

    def since_kill(at: float | None) -> float | None:
        return round(at - killed_at, 3) if at is not None else None

    states: dict[str, int] = {}
    for task_id in ids:
        state = where.last_state.get(task_id, "unknown")
        states[state] = states.get(state, 0) + 1
    return {
        "all_rescheduled": done,
        "rescheduled": len(where.moved),
        "seconds": since_kill(max(where.moved.values())) if done else None,
        "node_down_seconds": since_kill(where.down_at),
        "first_running_elsewhere_seconds": since_kill(min(where.moved.values(), default=None)),
        "last_states": states,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--spares", type=int, default=2, help="workers that take over")
    parser.add_argument("--runtime", default="mock", choices=["mock", "docker"])
    parser.add_argument("--rounds", type=int, default=3, help="kills land at any heartbeat phase")
    parser.add_argument("--timeout", type=float, default=60.0, help="after the kill")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        progress("round %d of %d", number, args.rounds)
        try:
            rounds.append(one_round(args))
        except ROUND_ERRORS as exc:
            rounds.append({"all_rescheduled": False, "seconds": None, "error": repr(exc)})
        progress("round %d: %s", number, rounds[-1])
    done = all(r["all_rescheduled"] for r in rounds)
    times = [r["seconds"] for r in rounds if r["seconds"] is not None]
    emit(
        "failover",
        {
            "runtime": args.runtime,
            "tasks": args.tasks,
            "spares": args.spares,
            "settings": "defaults: heartbeat 2 s, node down after 6 s",
            "timeout": args.timeout,
            "all_rescheduled": done,
            "median_seconds": statistics.median(times) if times else None,
            "max_seconds": max(times) if done else None,
            "target_seconds": TARGET_SECONDS,
            "meets_target": done and max(times) <= TARGET_SECONDS,
            "rounds": rounds,
        },
    )
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
