"""The worker's metrics: a timed runtime (mock and real Docker), exits, probes, host gauges."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from shared.errors import ImageNotFound, RuntimeFailure
from shared.models import PullPolicy, TaskSpec
from shared.specs import HealthCheck
from tests.conftest import remove_node_containers
from tests.support.waiting import wait_for
from worker.health import HealthMonitor
from worker.metrics import WorkerGauges, exit_class
from worker.runtime.base import ContainerExit
from worker.runtime.docker import DockerRuntime
from worker.runtime.mock import MockRuntime
from worker.runtime.timed import TimedRuntime


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def calls(operation: str, outcome: str = "ok") -> float:
    return value(
        "kube_worker_runtime_operation_duration_seconds_count",
        operation=operation,
        outcome=outcome,
    )


@pytest.mark.parametrize(
    ("code", "oom_killed", "kind"),
    [
        (0, False, "success"),
        (1, False, "error"),
        (125, False, "error"),
        (126, False, "cannot_run"),
        (127, False, "cannot_run"),
        (137, False, "signal"),
        (143, False, "signal"),
        (137, True, "oom_killed"),
    ],
)
def test_exit_codes_fall_into_a_few_classes(code: int, oom_killed: bool, kind: str) -> None:
    assert exit_class(code, oom_killed) == kind


def test_each_call_is_timed_by_operation_and_outcome() -> None:
    runtime = TimedRuntime(MockRuntime("m1"))
    started, failed, removed = calls("start"), calls("start", "error"), calls("remove")
    runtime.start("t", 1, TaskSpec(name="a", image="b"))
    with pytest.raises(RuntimeFailure):
        runtime.start("t", 2, TaskSpec(name="a", image="b", env={"MOCK_RUN_SECONDS": "soon"}))
    runtime.remove("t", 1)
    assert calls("start") == started + 1
    assert calls("start", "error") == failed + 1
    assert calls("remove") == removed + 1


def test_exits_are_counted_by_class_and_still_delivered() -> None:
    runtime = TimedRuntime(MockRuntime("m2"))
    seen: list[ContainerExit] = []
    watch = runtime.watch_exits(seen.append, lambda exc: None)
    errors = value("kube_worker_container_exits_total", code_class="error")
    try:
        env = {"MOCK_RUN_SECONDS": "0.01", "MOCK_EXIT_CODE": "3"}
        runtime.start("t", 1, TaskSpec(name="a", image="b", env=env))
        wait_for(lambda: seen, what="the exit")
    finally:
        watch.close()
    assert seen[0].exit_code == 3
    assert value("kube_worker_container_exits_total", code_class="error") == errors + 1


def test_health_probes_are_counted_by_type_and_result() -> None:
    runtime = MockRuntime("m3")
    runtime.start("t", 1, TaskSpec(name="a", image="b", env={"MOCK_EXEC_EXIT_CODE": "1"}))
    failed = value("kube_worker_health_checks_total", probe="exec", result="fail")
    monitor = HealthMonitor(runtime, lambda key, health, detail: None)
    try:
        monitor.watch(("t", 1), HealthCheck(exec=("x",), interval_seconds=0.05, failures=2))
        wait_for(
            lambda: (
                value("kube_worker_health_checks_total", probe="exec", result="fail") >= failed + 2
            ),
            what="two failed probes",
        )
    finally:
        monitor.close()


def test_gauges_report_containers_by_state_and_the_host() -> None:
    runtime = MockRuntime("m4")
    runtime.start("a", 1, TaskSpec(name="a", image="b"))
    runtime.start("b", 1, TaskSpec(name="b", image="b"))
    runtime.remove("b", 1)
    runtime.start("c", 1, TaskSpec(name="c", image="b"))
    registry = CollectorRegistry()
    registry.register(WorkerGauges(runtime))
    read = registry.get_sample_value
    assert read("kube_worker_engine_up") == 1
    assert read("kube_worker_containers", {"state": "running"}) == 2
    assert read("kube_worker_containers", {"state": "exited"}) == 0
    assert (read("kube_worker_cpu_seconds_total", {"mode": "idle"}) or 0) > 0
    used, total = read("kube_worker_memory_used_bytes"), read("kube_worker_memory_total_bytes")
    assert used is not None and total is not None and 0 < used < total
    assert (read("kube_worker_disk_total_bytes") or 0) > 0


# -- against the real engine ------------------------------------------------------------


@pytest.fixture
def docker_node(docker_client: docker.DockerClient) -> Iterator[str]:
    node = f"metrics-{uuid.uuid4().hex[:6]}"
    yield node
    remove_node_containers(docker_client, node)


def test_docker_calls_are_timed_with_their_outcome(docker_node: str, busybox_image: str) -> None:
    # given: the real engine, behind the timed runtime
    runtime = TimedRuntime(DockerRuntime(docker_node))
    missing = calls("start", "image_not_found")
    started = calls("start")
    # when: one start finds its image and one does not
    spec = TaskSpec(
        name="a", image=busybox_image, command=("sleep", "30"), pull_policy=PullPolicy.NEVER
    )
    runtime.start("t", 1, spec)
    absent = spec.model_copy(update={"image": "localhost/kube-absent:latest"})
    with pytest.raises(ImageNotFound):
        runtime.start("u", 1, absent)
    # then
    assert calls("start") == started + 1
    assert calls("start", "image_not_found") == missing + 1
    registry = CollectorRegistry()
    registry.register(WorkerGauges(runtime.inner))
    assert registry.get_sample_value("kube_worker_containers", {"state": "running"}) == 1
