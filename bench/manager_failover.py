"""Manager failover: SIGKILL the leading manager while tasks flow; time until a standby
places a new task, and check that nothing was lost, run twice, restarted or called down.

Two (`--managers`) managers run on one PostgreSQL store, a database of the benchmark's
own (created at the start, dropped at the end), with mock-runtime workers. Two modes:

- `trials` (the default): tasks are submitted at `--rate` a second; a few seconds in,
  the leader is killed with SIGKILL; the trial times, from the kill, the `manager.leader`
  event of the standby that took over and the first `task.scheduled` event after it
  (the first new task it placed). The killed manager is started again as a standby
  before the next trial. `--trials` kills, p50, p99 and max.
- `burst`: `--tasks` tasks (10,000) submitted at once; when half run, the leader is
  killed; the rate before and after and the takeover's pause.

Both check, from the events: every task submitted reached running (none lost); each task
ran one attempt on one node (none run twice, none restarted: a `task.running` of attempt
2, or of attempt 1 on a second node, counts as both); no `node.down` event (no node
falsely called down while no manager listened). The exit status is 1 if any check
fails. The machine's load average is reported with the figures (2 shared cores skew
them).

    .venv/bin/python -m bench.manager_failover [--trials 10] [--managers 2] [--workers 2]
    .venv/bin/python -m bench.manager_failover --mode burst [--tasks 10000] [--workers 4]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from bench.cluster import Cluster, exit_on_sigterm, free_port
from bench.driver import Driver, Event, task_spec
from bench.report import emit, percentile, progress

POSTGRES_URL = os.environ.get("KUBE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/")
"""The server the benchmark makes its database on, as a URL without a database."""
IMAGE = "busybox"  # the mock runtime runs any image
KEYS = ("task.*", "node.down", "manager.leader")


@contextlib.contextmanager
def own_database() -> Iterator[str]:
    """A database of this run's own on POSTGRES_URL; its URL. Dropped after, whatever happens."""
    name = f"kube_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES_URL}postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_URL}{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Ledger:
    """What the events said: each task's runs (attempt, node), placements, leaders, downs."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.runs: dict[str, set[tuple[int, str]]] = collections.defaultdict(set)
        self.running_at: dict[str, float] = {}  # task id -> its first task.running
        self.scheduled: list[float] = []  # arrival of every task.scheduled
        self.leaders: list[tuple[float, str, int]] = []  # (arrival, name, epoch)
        self.down: list[str] = []
        # task id -> (arrival, key, attempt, node, error): why a task ran twice
        self.history: dict[str, list[tuple[float, str, int, str, str]]] = collections.defaultdict(
            list
        )

    def __call__(self, event: Event) -> None:
        body = event.body
        if event.key.startswith("task."):
            self.history[str(body["id"])].append(
                (
                    event.at,
                    event.key,
                    int(body.get("attempt") or 0),
                    str(body.get("node")),
                    str(body.get("error") or ""),
                )
            )
        if event.key == "node.down":
            self.down.append(str(body.get("name")))
        elif event.key == "manager.leader":
            self.leaders.append((event.at, str(body["name"]), int(body["epoch"])))
        elif event.key == "task.scheduled":
            self.scheduled.append(event.at)
        elif event.key == "task.running":
            task_id = str(body["id"])
            self.runs[task_id].add((int(body["attempt"]), str(body.get("node"))))
            self.running_at.setdefault(task_id, event.at)

    def leader_after(self, at: float) -> tuple[float, str, int] | None:
        return next((lead for lead in self.leaders if lead[0] >= at), None)

    def placed_after(self, at: float) -> float | None:
        """The first task.scheduled after the first manager.leader event after `at`."""
        lead = self.leader_after(at)
        if lead is None:
            return None
        return next((s for s in self.scheduled if s >= lead[0]), None)

    def checks(self, ids: set[str], since: float = 0.0) -> dict[str, Any]:
        """Lost, run twice, restarted, nodes down: each a count, all zero when sound; and
        the events of a few tasks that ran twice (times from `since`), to see why."""
        twice = sorted(t for t in ids if len(self.runs.get(t, ())) > 1)
        restarted = [t for t in ids if any(a > 1 for a, _ in self.runs.get(t, ()))]
        return {
            "lost": len(ids - self.running_at.keys()),
            "run_twice": len(twice),
            "restarted": len(restarted),
            "nodes_down": len(self.down),
            "ran_twice_examples": {
                t: [(round(at - since, 3), k, a, n, e) for at, k, a, n, e in self.history[t]]
                for t in twice[:5]
            },
        }


class Managers:
    """The cluster's managers by name, on one store; which one leads."""

    def __init__(self, cluster: Cluster, store: str, count: int) -> None:
        self.cluster, self.store = cluster, store
        self.names = [f"m{i}" for i in range(1, count + 1)]

    def start(self, name: str) -> None:
        self.cluster.start(
            name,
            "manager",
            "--store",
            self.store,
            "--name",
            name,
            "--log-level",
            "WARNING",
            "--metrics-port",
            str(free_port()),
        )

    def roles(self) -> dict[str, str]:
        from kube.client import Client
        from shared.errors import KubeError
        from shared.settings import Settings

        try:
            with Client(Settings(amqp_url=self.cluster.url, request_timeout=3)) as client:
                return {m.name: m.role.value for m in client.managers() if m.seen_ago < 3}
        except KubeError:
            return {}

    def settle(self, timeout: float = 60.0) -> str:
        """Wait until every manager is seen, one leading; the leader's name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = self.roles()
            leaders = [n for n, r in roles.items() if r == "leader"]
            if set(self.names) <= roles.keys() and len(leaders) == 1:
                return leaders[0]
            time.sleep(0.3)
        raise TimeoutError(f"managers not settled after {timeout:g}s: {self.roles()}")


@contextlib.contextmanager
def cluster_on_postgres(args: argparse.Namespace) -> Iterator[tuple[Cluster, Managers, Driver]]:
    """Managers on a fresh database, mock workers, and a driver watching the events."""
    with own_database() as store, Cluster(keep=args.keep) as cluster:
        managers = Managers(cluster, store, args.managers)
        managers.start(managers.names[0])
        nodes = [cluster.node(i) for i in range(1, args.workers + 1)]
        for node in nodes:
            cluster.start_worker(node, "mock")
        cluster.wait_ready(nodes)
        for name in managers.names[1:]:
            managers.start(name)
        managers.settle()
        driver = Driver(cluster.url, KEYS)
        driver.open()
        try:
            yield cluster, managers, driver
        finally:
            driver.close()


def trials(args: argparse.Namespace) -> dict[str, Any]:
    """Kill the leader `--trials` times while tasks flow; time each takeover."""
    ledger = Ledger()
    rounds: list[dict[str, Any]] = []
    ids: set[str] = set()
    with cluster_on_postgres(args) as (cluster, managers, driver):
        driver.listeners.append(ledger)
        for trial in range(1, args.trials + 1):
            batch = {f"{cluster.prefix}-t{trial}-{i}" for i in range(args.per_trial)}
            ids.update(batch)
            rounds.append(one_trial(args, cluster, managers, driver, ledger, sorted(batch)))
            progress("trial %d: %s", trial, rounds[-1])
        managers.settle()
        driver.wait(lambda: False, 2)  # late events, if any
    times = [r["placed_seconds"] for r in rounds if r["placed_seconds"] is not None]
    checks = ledger.checks(ids, ledger.started)
    return {
        "trials": args.trials,
        "managers": args.managers,
        "workers": args.workers,
        "tasks": len(ids),
        "rate": args.rate,
        "lease_seconds": 5,
        "p50_seconds": percentile(times, 50),
        "p99_seconds": percentile(times, 99),
        "max_seconds": max(times, default=None),
        "min_seconds": min(times, default=None),
        "every_trial_placed": len(times) == args.trials,
        **checks,
        "sound": len(times) == args.trials and not any(v for k, v in checks.items()),
        "rounds": rounds,
    }


def one_trial(
    args: argparse.Namespace,
    cluster: Cluster,
    managers: Managers,
    driver: Driver,
    ledger: Ledger,
    batch: list[str],
) -> dict[str, Any]:
    """Submit `batch` at `--rate`; kill the leader once a fifth of it runs; time the takeover."""
    leader = managers.settle()
    stream = [
        replace(task_spec(t, IMAGE, ["sleep", "3600"]), due=n / args.rate)
        for n, t in enumerate(batch)
    ]
    head = set(batch[: len(batch) // 5])
    if not driver.submit(stream, lambda: head <= ledger.running_at.keys(), 60):
        raise TimeoutError(f"the first tasks of {batch[0]}... did not run")
    killed_at = time.perf_counter()
    cluster.kill(leader)
    placed = driver.wait(lambda: ledger.placed_after(killed_at) is not None, 60)
    lead = ledger.leader_after(killed_at)
    done = driver.wait(lambda: set(batch) <= ledger.running_at.keys(), 120)
    first = ledger.placed_after(killed_at)
    managers.start(leader)  # back as a standby for the next trial
    return {
        "killed": leader,
        "new_leader": lead[1] if lead else None,
        "epoch": lead[2] if lead else None,
        "leader_seconds": round(lead[0] - killed_at, 3) if lead else None,
        "placed_seconds": round(first - killed_at, 3) if first else None,
        "all_ran": done and placed,
        "killed_at": round(killed_at - ledger.started, 3),
    }


def burst(args: argparse.Namespace) -> dict[str, Any]:
    """`--tasks` at once; kill the leader when half run; rates and the pause."""
    ledger = Ledger()
    with cluster_on_postgres(args) as (cluster, managers, driver):
        driver.listeners.append(ledger)
        leader = managers.settle()
        ids = [f"{cluster.prefix}-b{i}" for i in range(args.tasks)]
        half = args.tasks // 2
        progress("%d tasks at once; the leader %s dies when %d run", args.tasks, leader, half)
        started = time.perf_counter()
        submissions = [task_spec(t, IMAGE, ["sleep", "3600"]) for t in ids]
        if not driver.submit(submissions, lambda: len(ledger.running_at) >= half, 600):
            raise TimeoutError(f"only {len(ledger.running_at)} tasks ran before the kill")
        killed_at = time.perf_counter()
        before = len(ledger.running_at)
        cluster.kill(leader)
        driver.on_progress = lambda: progress(
            "%.1fs after the kill: %d running",
            time.perf_counter() - killed_at,
            len(ledger.running_at),
        )
        driver.wait(lambda: ledger.placed_after(killed_at) is not None, 60)
        done = driver.wait(lambda: set(ids) <= ledger.running_at.keys(), 900)
        driver.wait(lambda: False, 2)  # late events, if any
    first = ledger.placed_after(killed_at)
    lead = ledger.leader_after(killed_at)
    last = max(ledger.running_at.values())
    after_placed = sum(1 for at in ledger.running_at.values() if first and at >= first)
    checks = ledger.checks(set(ids), killed_at)
    return {
        "tasks": args.tasks,
        "managers": args.managers,
        "workers": args.workers,
        "running_at_kill": before,
        "rate_before_per_second": round(before / (killed_at - started), 1),
        "takeover_leader_seconds": round(lead[0] - killed_at, 3) if lead else None,
        "takeover_pause_seconds": round(first - killed_at, 3) if first else None,
        "rate_after_per_second": (
            round(after_placed / (last - first), 1) if first and last > first else None
        ),
        "total_seconds": round(last - started, 2),
        "all_ran": done,
        **checks,
        "sound": done and first is not None and not any(v for k, v in checks.items()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["trials", "burst"], default="trials")
    parser.add_argument("--managers", type=int, default=2, help="on the one store (2 or 3)")
    parser.add_argument("--workers", type=int, default=None, help="mock workers (2; burst 4)")
    parser.add_argument("--trials", type=int, default=10, help="kills (trials mode)")
    parser.add_argument("--per-trial", type=int, default=100, help="tasks a trial submits")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks a second (trials)")
    parser.add_argument("--tasks", type=int, default=10_000, help="the burst (burst mode)")
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    if args.managers < 2:
        parser.error("--managers must be 2 or more: a failover needs a standby")
    if args.workers is None:
        args.workers = 4 if args.mode == "burst" else 2
    exit_on_sigterm()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = trials(args) if args.mode == "trials" else burst(args)
    results["load_avg_before"] = load_before
    emit(f"manager_failover_{args.mode}", results)
    return 0 if results["sound"] else 1


if __name__ == "__main__":
    sys.exit(main())
