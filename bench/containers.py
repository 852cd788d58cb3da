"""Container start rate: `--tasks` busybox tasks through kube against the engine's own limit.

Each round does the same work twice on the local Docker engine, cleaning up in between:

- direct: the docker SDK creates and starts `--tasks` containers from `--concurrency`
  threads (the worker's default bound), timed from the first create to the last start;
- kube: a fresh manager and one worker (`--runtime docker --concurrency N`) on a vhost of
  their own; the driver submits the tasks at once and times from the first publish to
  the last `task.running` event.

The figures are the median over `--rounds` rounds; `ratio` is kube's rate over the
direct rate (target: at least 0.9).

    .venv/bin/python -m bench.containers [--tasks 100] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from bench.cluster import NODE_LABEL, ROUND_ERRORS, Cluster, exit_on_sigterm, remove_containers
from bench.driver import Driver, Event, task_spec
from bench.profiling import Profiler
from bench.report import ROOT, CpuMeter, broker_pid, emit, engine_pids, ms, percentile, progress

IMAGE = "localhost/kube-busybox:latest"
COMMAND = ["sleep", "300"]
TARGET_RATIO = 0.9


def ensure_image(client: docker.DockerClient) -> None:
    """Build the local busybox image unless the engine has it; nothing is pulled."""
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        progress("building %s", IMAGE)
        script = ROOT / "deploy" / "images" / "busybox.sh"
        subprocess.run(["bash", str(script)], check=True, timeout=300, stdout=sys.stderr)


def direct(client: docker.DockerClient, count: int, concurrency: int) -> dict[str, Any]:
    """Create and start count containers from concurrency threads; remove them after."""
    label = f"bench-direct-{uuid.uuid4().hex[:6]}"

    def start(index: int) -> float:
        container = client.containers.create(
            IMAGE,
            command=COMMAND,
            name=f"{label}-{index}",
            labels={NODE_LABEL: label},
            environment={},
            ports={},
            detach=True,
        )
        container.start()
        return time.perf_counter()

    meter = CpuMeter({"engine": engine_pids, "benchmark": [os.getpid()]})
    try:
        meter.start()
        begun = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            finished = list(pool.map(start, range(count)))
        elapsed = max(finished) - begun
        cpu = meter.stop()
    finally:
        removed = remove_containers(label)
        progress("direct: removed %d containers", removed)
    return {
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed, 2),
        "cpu_seconds": cpu,
    }


def through_kube(
    count: int, concurrency: int, timeout: float, profile: Path | None = None
) -> dict[str, Any]:
    """Submit count tasks to a manager and one docker worker; time them to running."""
    with Cluster() as cluster:
        node = cluster.node(1)
        cluster.start_manager()
        cluster.start_worker(node, "docker", "--concurrency", str(concurrency))
        cluster.wait_ready([node])
        driver = Driver(cluster.url, ["task.running", "task.failed"])
        driver.open()
        running: dict[str, float] = {}
        failed: dict[str, str] = {}

        def tally(event: Event) -> None:
            task_id = str(event.body["id"])
            if event.key == "task.running":
                running.setdefault(task_id, event.at)
            else:
                failed[task_id] = str(event.body.get("error"))

        driver.listeners.append(tally)
        driver.on_progress = lambda: progress("kube: running %d/%d", len(running), count)
        submissions = [task_spec(f"{cluster.prefix}-{i}", IMAGE, COMMAND) for i in range(count)]
        profiler = (
            Profiler(profile, [("manager", cluster.pid("manager")), ("worker", cluster.pid(node))])
            if profile
            else contextlib.nullcontext()
        )
        broker = broker_pid()
        meter = CpuMeter(
            {
                "manager": [cluster.pid("manager")],
                "worker": [cluster.pid(node)],
                "broker": [broker] if broker else [],
                "engine": engine_pids,
            }
        )
        meter.start()
        try:
            with profiler:
                finished = driver.submit(
                    submissions, lambda: len(running) + len(failed) >= count, timeout
                )
        finally:
            driver.close()
        cpu = meter.stop()
        if failed:
            progress("kube: %d tasks failed, e.g. %s", len(failed), next(iter(failed.values())))
        first = min(driver.published.values())
        elapsed = max(running.values(), default=first) - first
        latencies = [running[i] - driver.published[i] for i in running]
    return {
        "seconds": round(elapsed, 3),
        "per_second": round(len(running) / elapsed, 2) if elapsed > 0 else 0.0,
        "running": len(running),
        "failed": len(failed),
        "finished": finished,
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "cpu_seconds": cpu,
    }


def one_round(
    client: docker.DockerClient, args: argparse.Namespace, number: int, profile: Path | None
) -> dict[str, Any]:
    """The direct start, then the same through kube; both cleaned up."""
    progress("round %d: direct, %d containers, %d threads", number, args.tasks, args.concurrency)
    plain = direct(client, args.tasks, args.concurrency)
    progress("round %d: direct %s", number, plain)
    progress("round %d: kube, %d tasks", number, args.tasks)
    kube = through_kube(args.tasks, args.concurrency, args.timeout, profile)
    progress("round %d: kube %s", number, kube)
    return {
        "direct": plain,
        "kube": kube,
        "ratio": round(kube["per_second"] / plain["per_second"], 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's bound")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="per kube round")
    parser.add_argument("--profile", type=Path, help="py-spy the manager and worker here")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    client = docker.from_env(max_pool_size=max(16, args.concurrency * 2))
    try:
        ensure_image(client)
        engine = str(client.version().get("Version", "unknown"))
        progress("warm-up: one container")
        direct(client, 1, 1)
        rounds: list[dict[str, Any]] = []
        for number in range(1, args.rounds + 1):
            profile = args.profile / f"round-{number}" if args.profile else None
            try:
                rounds.append(one_round(client, args, number, profile))
            except (*ROUND_ERRORS, docker.errors.DockerException) as exc:
                progress("round %d failed: %r", number, exc)
                rounds.append({"error": repr(exc)})
    finally:
        client.close()

    done = [r for r in rounds if "error" not in r]
    direct_rate = statistics.median(r["direct"]["per_second"] for r in done) if done else 0.0
    kube_rate = statistics.median(r["kube"]["per_second"] for r in done) if done else 0.0
    ratio = round(kube_rate / direct_rate, 3) if direct_rate else None
    emit(
        "containers",
        {
            "tasks": args.tasks,
            "concurrency": args.concurrency,
            "image": IMAGE,
            "docker": engine,
            "direct_per_second": direct_rate,
            "kube_per_second": kube_rate,
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio is not None and ratio >= TARGET_RATIO,
            "rounds": rounds,
        },
    )
    ok = len(done) == len(rounds) and all(r["kube"]["finished"] for r in done)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
