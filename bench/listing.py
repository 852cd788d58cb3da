"""How long `kube ps` takes, and what the manager holds, with many tasks in the store.

    python -m bench.listing [--sizes 1000,10000,100000]

For each size: a store is filled with that many ordinary tasks (pending, as submitted),
a manager is started on it against a vhost of its own, and `kube ps` (the CLI, a process
of its own, as a user runs it) and `kube ps --json` are timed; the manager's resident
memory is read before and after. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from bench.cluster import Cluster, exit_on_sigterm
from bench.report import ROOT, emit, progress
from manager import core
from manager.effects import Decision
from manager.store import Store
from shared.models import TaskSpec


def fill(cluster: Cluster, count: int) -> None:
    """Record `count` pending tasks in the manager's store, a thousand per transaction."""
    store = Store(cluster.workdir / "manager.db")
    now = datetime.now(UTC)
    spec = TaskSpec(
        name="web",
        image="localhost/kube-busybox:latest",
        command=("httpd", "-f", "-p", "8080"),
        ports=(8080,),
        env={"MODE": "production"},
    )
    for start in range(0, count, 1000):
        decision = Decision()
        for i in range(start, min(start + 1000, count)):
            decision.extend(core.accept(spec, f"web-{i:06d}", now))
        decision.outgoing.clear()  # no events: nobody listens
        store.record(decision)
        store.commit()
    store.close()


def timed(cluster: Cluster, *args: str) -> tuple[float, int]:
    """Seconds `kube ARGS` took, and the bytes it printed."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kube", "--timeout", "60", *args],
        env=cluster.env,
        capture_output=True,
        cwd=ROOT,
        timeout=600,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"kube {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]!r}"
        )
    return took, len(done.stdout)


def answers(cluster: Cluster, timeout: float = 120.0) -> None:
    """Wait until the manager answers a query."""
    from kube.client import Client
    from shared.errors import KubeError
    from shared.settings import Settings

    deadline = time.monotonic() + timeout
    with Client(Settings(amqp_url=cluster.url, request_timeout=5)) as client:
        while True:
            try:
                client.nodes()
                return
            except KubeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def measure(count: int) -> dict[str, Any]:
    with Cluster() as cluster:
        progress("filling a store with %d tasks", count)
        fill(cluster, count)
        manager = cluster.start_manager()
        answers(cluster)
        rss = psutil.Process(manager.pid)
        before = rss.memory_info().rss
        ps, printed = timed(cluster, "ps")
        ps_json, _ = timed(cluster, "ps", "--json")
        after = rss.memory_info().rss
        progress("%d tasks: kube ps %.2fs, --json %.2fs", count, ps, ps_json)
        return {
            "tasks": count,
            "kube_ps_s": round(ps, 3),
            "kube_ps_json_s": round(ps_json, 3),
            "ps_output_bytes": printed,
            "manager_rss_mb_before": round(before / 2**20, 1),
            "manager_rss_mb_after": round(after / 2**20, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    results = [measure(int(size)) for size in args.sizes.split(",")]
    emit("listing", {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
