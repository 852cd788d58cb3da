"""Broker failover: stop the RabbitMQ node the manager is on, under load; bring it back.

Three local RabbitMQ nodes are clustered (tests/support/rabbit_cluster.py: own ports, own
directories, the system broker untouched). A manager and `--workers` mock workers start
with every node's URL: the manager's list begins with node 1, each worker's with another
node, so node 1 carries the manager and one worker. Tasks are submitted at `--rate` a
second for `--duration` seconds through node 3 (the submitter is not under test). At
`--stop-at` seconds node 1 is stopped (`rabbitmqctl stop_app`); `--down-for` seconds later
it is started again. With `--how kill` node 1's Erlang VM is killed with SIGKILL instead,
as a crash of its machine would end it, and started again.

Each round says whether every task ran exactly once (one `task.running` attempt each,
none lost, none restarted), whether a node was marked down (none should be: every worker
keeps running and moves to another node), and how long scheduling paused: the longest gap
between consecutive placements (`task.scheduled` events) and between consecutive
`task.running` events, against about 1/rate seconds in steady state.

    .venv/bin/python -m bench.broker_failover [--rounds 3] [--rate 20] [--duration 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.cluster import ROUND_ERRORS, Cluster, exit_on_sigterm
from bench.driver import Driver, Event, task_spec
from bench.report import emit, progress
from tests.support.rabbit_cluster import RabbitCluster

IMAGE = "mock/app"


@dataclass
class Tally:
    """What the events of one round say: placements, attempts, nodes marked down."""

    ids: set[str]
    scheduled: dict[str, float] = field(default_factory=dict)  # first placement
    running: dict[str, float] = field(default_factory=dict)  # first running event
    attempts: dict[str, set[int]] = field(default_factory=dict)  # attempts seen running
    lost: set[str] = field(default_factory=set)  # tasks with a task.lost event
    downs: list[str] = field(default_factory=list)  # node.down events, by node name

    def __call__(self, event: Event) -> None:
        body = event.body
        if event.key == "node.down":
            self.downs.append(str(body.get("name")))
            return
        task_id = str(body.get("id"))
        if task_id not in self.ids:
            return
        if event.key == "task.scheduled":
            self.scheduled.setdefault(task_id, event.at)
        elif event.key == "task.running":
            self.running.setdefault(task_id, event.at)
            self.attempts.setdefault(task_id, set()).add(int(body.get("attempt", 0)))
        elif event.key == "task.lost":
            self.lost.add(task_id)

    def all_running(self) -> bool:
        return self.running.keys() >= self.ids

    def twice(self) -> list[str]:
        """Tasks that ran in more than one attempt."""
        return sorted(task for task, seen in self.attempts.items() if len(seen) > 1)


def longest_gap(times: Sequence[float]) -> tuple[float, float]:
    """The longest gap between consecutive times, and when it began; (0, first) if < 2."""
    ordered = sorted(times)
    best, began = 0.0, ordered[0] if ordered else 0.0
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after - before > best:
            best, began = after - before, before
    return best, began


def one_round(rabbit: RabbitCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Load a kube cluster on the RabbitMQ nodes, stop node 1 and start it again."""
    victim, submitter = rabbit.nodes[0], rabbit.nodes[-1]
    with Cluster(broker=rabbit) as cluster:
        cluster.start_manager(url=rabbit.url(cluster.vhost, first=0))
        workers = [cluster.node(i + 1) for i in range(args.workers)]
        for i, name in enumerate(workers):
            url = rabbit.url(cluster.vhost, first=i % len(rabbit.nodes))
            cluster.start_worker(name, "mock", url=url)
        cluster.wait_ready(workers)
        driver = Driver(submitter.url(cluster.vhost), ["task.*", "node.down"])
        driver.open()
        count = int(args.rate * args.duration)
        ids = {f"{cluster.prefix}-{i:05d}" for i in range(count)}
        tally = Tally(ids)
        driver.listeners.append(tally)
        marks: dict[str, float] = {}
        failures: list[BaseException] = []

        on = rabbit.connected_to(cluster.vhost).get("kube-manager")
        if on != {victim.amqp_port}:
            raise RuntimeError(f"the manager is connected to port(s) {on}, not to node 1's")

        def stop_and_start() -> None:
            try:
                time.sleep(args.stop_at)
                marks["stopped"] = time.perf_counter()
                (rabbit.kill if args.how == "kill" else rabbit.stop_app)(victim)
                marks["stop_returned"] = time.perf_counter()
                time.sleep(args.down_for)
                marks["starting"] = time.perf_counter()
                (rabbit.restart if args.how == "kill" else rabbit.start_app)(victim)
                marks["started"] = time.perf_counter()
            except BaseException as exc:  # noqa: BLE001 - reported by the round below
                failures.append(exc)

        submissions = [
            dataclasses.replace(task_spec(task_id, IMAGE, ["serve"]), due=n / args.rate)
            for n, task_id in enumerate(sorted(ids))
        ]
        progress(
            "%d tasks at %g/s; %s stops at %gs for %gs",
            count,
            args.rate,
            victim.name,
            args.stop_at,
            args.down_for,
        )
        chaos = threading.Thread(target=stop_and_start, name="stop-node", daemon=True)
        began = time.perf_counter()
        chaos.start()
        driver.on_progress = lambda: progress(
            "%.0fs: %d published, %d running",
            time.perf_counter() - began,
            len(driver.published),
            len(tally.running),
        )
        try:
            done = driver.submit(
                submissions,
                lambda: tally.all_running() and "started" in marks,
                args.duration + args.timeout,
            )
            chaos.join(120)
        finally:
            driver.close()
        if not done or tally.downs or tally.lost:
            for name in ["manager", *workers]:
                progress("the log of %s ends:\n%s", name, cluster.tail(name, 3000))
        if failures:
            raise RuntimeError(f"stopping or starting {victim.name} failed: {failures[0]}")

    def since_stop(at: float | None) -> float | None:
        return round(at - marks["stopped"], 3) if at is not None and "stopped" in marks else None

    scheduled_gap, scheduled_gap_at = longest_gap(list(tally.scheduled.values()))
    running_gap, running_gap_at = longest_gap(list(tally.running.values()))
    return {
        "tasks": count,
        "all_ran": done,
        "not_running": len(ids - tally.running.keys()),
        "ran_twice": len(tally.twice()),
        "lost_events": len(tally.lost),
        "nodes_marked_down": sorted(set(tally.downs)),
        "pause_seconds": round(scheduled_gap, 3),
        "pause_began_after_stop": since_stop(scheduled_gap_at),
        "running_pause_seconds": round(running_gap, 3),
        "running_pause_began_after_stop": since_stop(running_gap_at),
        "stop_seconds": round(marks["stop_returned"] - marks["stopped"], 3),
        "start_seconds": round(marks["started"] - marks["starting"], 3),
    }


def clean(result: dict[str, Any]) -> bool:
    """Whether a round lost nothing, ran nothing twice and marked no node down."""
    return bool(
        result.get("all_ran")
        and result.get("not_running") == 0
        and result.get("ran_twice") == 0
        and result.get("lost_events") == 0
        and not result.get("nodes_marked_down")
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="tasks submitted a second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of submitting")
    parser.add_argument("--stop-at", type=float, default=10.0, help="seconds into the load")
    parser.add_argument("--down-for", type=float, default=10.0, help="seconds node 1 is down")
    parser.add_argument("--timeout", type=float, default=60.0, help="after the last submit")
    parser.add_argument(
        "--how",
        choices=["stop_app", "kill"],
        default="stop_app",
        help="stop RabbitMQ on node 1 (rabbitmqctl stop_app), or SIGKILL its Erlang VM",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    exit_on_sigterm()
    rounds: list[dict[str, Any]] = []
    with RabbitCluster() as rabbit:
        progress("three RabbitMQ nodes up and clustered in %.1fs", rabbit.started_in or 0)
        for number in range(1, args.rounds + 1):
            progress("round %d of %d", number, args.rounds)
            try:
                rounds.append(one_round(rabbit, args))
            except ROUND_ERRORS as exc:
                rounds.append({"all_ran": False, "error": repr(exc)})
            progress("round %d: %s", number, rounds[-1])
        started_in = rabbit.started_in
    ok = all(clean(r) for r in rounds)
    pauses = [r["pause_seconds"] for r in rounds if "pause_seconds" in r]
    running = [r["running_pause_seconds"] for r in rounds if "running_pause_seconds" in r]
    emit(
        "broker_failover",
        {
            "rate": args.rate,
            "duration": args.duration,
            "workers": args.workers,
            "down_for": args.down_for,
            "how": args.how,
            "settings": "defaults: heartbeat 2 s, node down after 6 s",
            "rabbit_cluster_start_seconds": round(started_in or 0, 1),
            "nothing_lost": ok,
            "pause_p50_seconds": statistics.median(pauses) if pauses else None,
            "pause_max_seconds": max(pauses) if pauses else None,
            "running_pause_p50_seconds": statistics.median(running) if running else None,
            "running_pause_max_seconds": max(running) if running else None,
            "rounds": rounds,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
