"""The worker's metrics: engine operations, container exits, health probes, the host.

Counters are process-wide; gauges (containers by state, host usage) are read from the
engine and psutil at scrape time, so a restarted worker reports the truth at once.
Every sample a worker serves carries its `node` label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psutil
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from shared.errors import EngineUnavailable, ImageNotFound, RuntimeFailure
from shared.metrics import MetricsServer, WithLabels, serve
from shared.specs import HealthCheck
from worker.runtime.base import ContainerStatus, Runtime
from worker.streams import live_readers

log = logging.getLogger(__name__)

OPERATIONS = ("ping", "start", "remove", "logs", "list", "address", "exec", "watch_exits")
OUTCOMES = ("ok", "engine_unavailable", "image_not_found", "error")
EXIT_CLASSES = ("success", "error", "cannot_run", "signal", "oom_killed")
PROBES = ("http", "tcp", "exec")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Seconds; from a cached inspect to a large image pull."""

# psutil's guest times are already counted in user and nice.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

OPERATION_DURATION = Histogram(
    "kube_worker_runtime_operation_duration_seconds",
    "Container engine calls, by operation and outcome.",
    ["operation", "outcome"],
    buckets=DURATION_BUCKETS,
)
EXITS = Counter(
    "kube_worker_container_exits",
    "Containers that stopped running, by exit code class (success, error, cannot_run,"
    " signal, oom_killed).",
    ["code_class"],
)
STALE_DISPATCHES = Counter(
    "kube_worker_stale_dispatches",
    "Dispatches refused because they came from a manager deposed since (an epoch older"
    " than the newest this worker has seen).",
)
HEALTH_CHECKS = Counter(
    "kube_worker_health_checks",
    "Health probes run, by probe type and result (pass or fail).",
    ["probe", "result"],
)

for _operation in OPERATIONS:
    OPERATION_DURATION.labels(_operation, "ok")
for _class in EXIT_CLASSES:
    EXITS.labels(_class)
for _probe in PROBES:
    for _result in ("pass", "fail"):
        HEALTH_CHECKS.labels(_probe, _result)


def outcome(exc: BaseException | None) -> str:
    """The `outcome` label of an engine call that raised exc (None: it returned)."""
    if exc is None:
        return "ok"
    if isinstance(exc, EngineUnavailable):
        return "engine_unavailable"
    if isinstance(exc, ImageNotFound):
        return "image_not_found"
    return "error"


def exit_class(code: int, oom_killed: bool = False) -> str:
    """The class of a container's exit: 0, 1-125, 126-127 (not runnable), 128+n, OOM."""
    if oom_killed:
        return "oom_killed"
    if code == 0:
        return "success"
    if code in (126, 127):
        return "cannot_run"
    return "signal" if code > 128 else "error"


def probed(check: HealthCheck, passed: bool) -> None:
    """Count one health probe's result."""
    probe = "exec" if check.exec is not None else "http" if check.http is not None else "tcp"
    HEALTH_CHECKS.labels(probe, "pass" if passed else "fail").inc()


class WorkerGauges:
    """A Prometheus collector for what is true now: containers by state and host usage."""

    def __init__(self, runtime: Runtime, disk_path: str = "/") -> None:
        self._runtime = runtime
        self._disk_path = disk_path

    def collect(self) -> Iterator[Metric]:
        yield from self._containers()
        yield from self._host()
        yield GaugeMetricFamily(
            "kube_worker_stream_readers",
            "Threads reading a session's stream (kube logs -f): 0 once every session ended.",
            value=float(live_readers()),
        )

    def _containers(self) -> Iterator[Metric]:
        engine = GaugeMetricFamily(
            "kube_worker_engine_up", "1 when the container engine answered this scrape."
        )
        try:
            found = self._runtime.list()
        except RuntimeFailure as exc:
            log.debug("metrics: cannot list containers: %s", exc)
            engine.add_metric([], 0)
            yield engine
            return
        engine.add_metric([], 1)
        yield engine
        containers = GaugeMetricFamily(
            "kube_worker_containers", "This node's containers, by state.", labels=["state"]
        )
        for status in ContainerStatus:
            containers.add_metric([status.value], sum(i.status == status for i in found))
        yield containers

    def _host(self) -> Iterator[Metric]:
        times = psutil.cpu_times()
        cpu = CounterMetricFamily(
            "kube_worker_cpu_seconds", "Cpu time the host spent, by mode.", labels=["mode"]
        )
        for mode in CPU_MODES:
            cpu.add_metric([mode], float(getattr(times, mode, 0.0)))
        yield cpu
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._disk_path)
        for name, text, value in (
            ("kube_worker_memory_used_bytes", "Host memory in use.", memory.used),
            ("kube_worker_memory_total_bytes", "Host memory.", memory.total),
            ("kube_worker_disk_used_bytes", "Used space on the disk holding /.", disk.used),
            ("kube_worker_disk_total_bytes", "Size of the disk holding /.", disk.total),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))


def serve_metrics(port: int, node: str, runtime: Runtime) -> MetricsServer | None:
    """Serve the worker's /metrics on port (0: not at all), every sample labelled node."""
    labels = {"node": node}
    return serve(port, [WithLabels(REGISTRY, labels), WithLabels(WorkerGauges(runtime), labels)])
