"""What every benchmark reports: percentiles, the machine it ran on, one JSON line."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The source tree the benchmark and the processes it starts run from."""

_STARTED = time.monotonic()


def progress(message: str, *args: object) -> None:
    """A progress line on stderr; stdout is kept for the one JSON line."""
    text = message % args if args else message
    print(f"[{time.monotonic() - _STARTED:7.2f}s] {text}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for a report."""
    return round(seconds * 1000, 2)


def _command(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return math.nan


def machine() -> dict[str, Any]:
    """Where the figures come from: cpu, memory, versions and the commit measured."""
    commit = _command("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = _command(
        "git", "-C", str(ROOT), "status", "--porcelain", "--", "shared", "manager", "worker", "kube"
    )
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": _command("rabbitmqctl", "-q", "version"),
        # Other work on the machine skews every figure: the load when the run ended.
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "commit": commit + ("+dirty" if dirty not in ("", "unknown") else ""),
    }


def emit(name: str, results: dict[str, Any]) -> None:
    """Print the benchmark's one JSON line on stdout."""
    line = {"benchmark": name, **_finite(results), "machine": machine()}
    print(json.dumps(line, allow_nan=False), flush=True)


def _finite(value: Any) -> Any:
    """NaN and infinities (a phase with no sample) as null: the line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def broker_pid() -> int | None:
    """The pid of the local RabbitMQ node (its beam.smp, not that of a rabbitmqctl)."""
    import psutil

    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "beam.smp" and "rabbit boot" in cmdline:
            return int(proc.pid)
    return None


def server_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving the database a URL names (its backends)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid != pg_backend_pid()"
        ).fetchall()
    return [int(pid) for (pid,) in rows]


ENGINE_PROCESSES = frozenset({"dockerd", "containerd", "containerd-shim", "runc"})


def engine_pids() -> list[int]:
    """The Docker engine's processes now: dockerd, containerd, the shims, runc."""
    import psutil

    return [
        int(proc.pid)
        for proc in psutil.process_iter(["name"])
        if any(str(proc.info["name"] or "").startswith(name) for name in ENGINE_PROCESSES)
    ]


Pids = list[int] | Callable[[], list[int]]


class CpuMeter:
    """CPU seconds (user + system) that groups of processes spend between start and stop.

    A group is a list of pids, or a function that names them at each reading: a process
    that appeared in between counts with all its CPU time.
    """

    def __init__(self, groups: Mapping[str, Pids]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}
        self._wall = 0.0

    def _pids(self, group: str) -> list[int]:
        pids = self.groups[group]
        return pids() if callable(pids) else pids

    @staticmethod
    def _cpu(pid: int) -> float | None:
        import psutil

        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def start(self) -> None:
        self._before = {}
        for group in self.groups:
            for pid in self._pids(group):
                seconds = self._cpu(pid)
                if seconds is not None:
                    self._before[pid] = seconds
        self._wall = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """CPU seconds per group and the wall time they were measured over."""
        wall = time.monotonic() - self._wall
        used: dict[str, Any] = {"wall_seconds": round(wall, 2)}
        for group in self.groups:
            total = 0.0
            for pid in self._pids(group):
                seconds = self._cpu(pid)
                if seconds is not None:
                    total += seconds - self._before.get(pid, 0.0)
            used[group] = round(total, 2)
        return used
