"""`kube logs -f` latency (issue 16): first line, and each line from container to terminal.

A fresh manager and one worker on the real Docker engine; one task prints the host's
boot clock (`/proc/uptime`, 10 ms steps: containers share the kernel) every 100 ms.

- first line: `kube logs -f --tail 0 TASK` is started as a user starts it, timed from the
  process's start to its first line on stdout (Python's start-up and the connection
  included), `--first` times, each ended with SIGINT (its exit code must be 130); and
  `kube --version` as many times, for the start-up alone;
- line latency: one `kube logs -f --tail 0 --timestamps TASK` read for `--seconds`; for
  each line, the time it reached the benchmark's end of the pipe minus the time the
  engine logged it (its timestamp, microseconds), and minus the time the container
  printed (its boot clock reading, so up to 10 ms late).

    .venv/bin/python -m bench.logs_latency [--seconds 30] [--first 5]

Targets: first line under 1 s, line latency p99 under 500 ms, on an idle cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from bench.cluster import Cluster, exit_on_sigterm
from bench.containers import IMAGE, ensure_image
from bench.report import ROOT, CpuMeter, emit, ms, percentile, progress

UPTIME_TICKER = "while true; do cat /proc/uptime; sleep 0.1; done"
FIRST_LINE_TARGET = 1.0
P99_TARGET = 0.5


class Follower:
    """A `kube logs` process whose stdout lines are stamped as they arrive."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kube", "logs", *args],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        # (monotonic, wall, boot clock, line) at arrival
        self.lines: list[tuple[float, float, float, str]] = []
        self.first = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            now = (time.monotonic(), time.time(), time.clock_gettime(time.CLOCK_BOOTTIME))
            self.lines.append((*now, line.rstrip("\n")))
            self.first.set()

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(15)
        finally:
            self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def following(cluster: Cluster, *args: str) -> Iterator[Follower]:
    follower = Follower(cluster, *args)
    try:
        yield follower
    finally:
        follower.close()


def first_line(cluster: Cluster, task_id: str, times: int) -> dict[str, Any]:
    """Seconds from `kube logs -f` starting to its first line, `times` times."""
    found: list[float] = []
    codes: list[int] = []
    for _ in range(times):
        with following(cluster, "-f", "--tail", "0", task_id) as follower:
            if not follower.first.wait(30):
                raise TimeoutError("kube logs -f printed nothing in 30 s")
            found.append(follower.lines[0][0] - follower.started)
            codes.append(follower.interrupt())
    startup = [start_up(cluster) for _ in range(times)]
    return {
        "samples": len(found),
        "p50_ms": ms(percentile(found, 50)),
        "max_ms": ms(max(found)),
        "exit_codes": sorted(set(codes)),
        "under_target": max(found) < FIRST_LINE_TARGET,
        # what any `kube` command takes before it does anything (Python, imports): the
        # rest is connecting, resolving the task, opening the session, the first frame
        "kube_version_p50_ms": ms(percentile(startup, 50)),
        "net_p50_ms": ms(percentile(found, 50) - percentile(startup, 50)),
    }


def start_up(cluster: Cluster) -> float:
    """Seconds `kube --version` takes: the start-up every command pays."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "kube", "--version"],
        env=cluster.env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.monotonic() - started


def line_latency(cluster: Cluster, task_id: str, seconds: float) -> dict[str, Any]:
    """Latency of each line read for `seconds`: from the engine's timestamp, and from the
    container's own reading of the boot clock. The manager's CPU is measured over as long
    with nobody following first, so that what the frames cost shows apart."""
    idle = CpuMeter({"manager": [cluster.pid("manager")]})
    idle.start()
    time.sleep(seconds)
    idle_cpu = idle.stop()["manager"]
    with following(cluster, "-f", "--tail", "0", "--timestamps", task_id) as follower:
        meter = CpuMeter(
            {
                "manager": [cluster.pid("manager")],
                "worker": [cluster.pid(cluster.node(1))],
                "kube_logs": [follower.proc.pid],
            }
        )
        meter.start()
        time.sleep(seconds)  # the follower collects meanwhile; this is the measuring time
        cpu = meter.stop()
        code = follower.interrupt()
    engine: list[float] = []
    container: list[float] = []
    for _, wall, boot, line in follower.lines:
        stamp, _, rest = line.partition(" ")
        logged = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        engine.append(wall - logged)
        container.append(boot - float(rest.split()[0]))
    return {
        "samples": len(engine),
        "from_engine_timestamp": _spread(engine),
        "from_container_clock": _spread(container),
        "exit_code": code,
        "cpu_seconds": cpu,
        # a line is a frame here (100 ms apart, over the 50 ms a frame may wait)
        "manager_idle_cpu_seconds": idle_cpu,
        "manager_cpu_ms_per_line": round(
            (cpu["manager"] - idle_cpu) * 1000 / max(len(engine), 1), 3
        ),
        "p99_under_target": percentile(engine, 99) < P99_TARGET
        and percentile(container, 99) < P99_TARGET,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values)) if values else float("nan"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="line latency: how long")
    parser.add_argument("--first", type=int, default=5, help="first line: how many times")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    import docker

    from kube.client import Client
    from shared.models import TaskSpec
    from shared.settings import Settings
    from shared.states import TaskState

    engine = docker.from_env()
    try:
        ensure_image(engine)
    finally:
        engine.close()
    with Cluster() as cluster:
        node = cluster.node(1)
        cluster.start_manager()
        cluster.start_worker(node, "docker")
        cluster.wait_ready([node])
        spec = TaskSpec(
            name="ticker", image=IMAGE, command=("sh", "-c", UPTIME_TICKER), pull_policy="never"
        )
        with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
            task_id = client.submit(spec)
            client.wait(task_id, {TaskState.RUNNING}, timeout=120)
        progress("first line, %d times", args.first)
        first = first_line(cluster, task_id, args.first)
        progress("first line: %s", first)
        progress("line latency for %gs", args.seconds)
        lines = line_latency(cluster, task_id, args.seconds)
        progress("line latency: %s", lines)
    emit("logs_latency", {"first_line": first, "line_latency": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
