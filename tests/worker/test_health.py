"""The health monitor over the mock runtime and a real local socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from shared.models import Health
from shared.specs import HealthCheck, TaskSpec
from tests.support.waiting import wait_for
from worker.health import HealthMonitor
from worker.runtime.mock import MockRuntime

Change = tuple[tuple[str, int], Health, str]


@pytest.fixture
def changes() -> list[Change]:
    return []


@pytest.fixture
def monitor(changes: list[Change]) -> Iterator[tuple[MockRuntime, HealthMonitor]]:
    runtime = MockRuntime("n1")
    monitor = HealthMonitor(
        runtime, lambda key, health, detail: changes.append((key, health, detail))
    )
    yield runtime, monitor
    monitor.close()


def test_an_exec_check_that_passes_makes_the_task_healthy(
    monitor: tuple[MockRuntime, HealthMonitor], changes: list[Change]
) -> None:
    runtime, health = monitor
    runtime.start("t", 1, TaskSpec(name="a", image="b"))
    health.watch(("t", 1), HealthCheck(exec=("true",), interval_seconds=0.1))
    wait_for(lambda: changes, what="a health change")
    assert changes[0][:2] == (("t", 1), Health.HEALTHY) and changes[0][2] == "exec exited 0"


def test_consecutive_failures_make_it_unhealthy_once(
    monitor: tuple[MockRuntime, HealthMonitor], changes: list[Change]
) -> None:
    runtime, health = monitor
    runtime.start("t", 1, TaskSpec(name="a", image="b", env={"MOCK_EXEC_EXIT_CODE": "1"}))
    health.watch(("t", 1), HealthCheck(exec=("x",), interval_seconds=0.05, failures=3))
    wait_for(lambda: changes, what="the task to turn unhealthy")
    assert [c[1] for c in changes] == [Health.UNHEALTHY]
    assert health.health(("t", 1)) == Health.UNHEALTHY


def test_a_tcp_check_connects_to_a_listening_port(
    monitor: tuple[MockRuntime, HealthMonitor], changes: list[Change]
) -> None:
    runtime, health = monitor
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    runtime.start("t", 1, TaskSpec(name="a", image="b"))
    health.watch(("t", 1), HealthCheck(tcp={"port": port}, interval_seconds=0.1))  # type: ignore[arg-type]
    wait_for(lambda: changes, what="the tcp check")
    server.close()
    assert changes[0][1] == Health.HEALTHY


def test_a_forgotten_container_is_no_longer_probed(
    monitor: tuple[MockRuntime, HealthMonitor], changes: list[Change]
) -> None:
    runtime, health = monitor
    runtime.start("t", 1, TaskSpec(name="a", image="b", env={"MOCK_EXEC_EXIT_CODE": "1"}))
    health.watch(
        ("t", 1), HealthCheck(exec=("x",), interval_seconds=0.05, failures=1, grace_seconds=0.3)
    )
    health.forget(("t", 1))
    assert health.health(("t", 1)) is None
    with pytest.raises(AssertionError):
        wait_for(lambda: changes, what="no change", timeout=0.6)
