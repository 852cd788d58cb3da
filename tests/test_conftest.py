"""The test suite itself: without RabbitMQ or Docker, only the tests that need them stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_BOTH = [
    "tests/shared/test_bus.py::test_a_published_message_is_consumed_and_acked",
    "tests/worker/test_docker_runtime.py::test_exec_returns_the_commands_exit_code",
]


def without_services(ci: bool) -> dict[str, str]:
    """This environment with rabbitmqctl off PATH and DOCKER_HOST pointing nowhere."""
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if not os.path.exists(os.path.join(d, "rabbitmqctl"))
    )
    env = {**os.environ, "PATH": path, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return env


def pytest_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tests_that_use_the_broker_or_the_engine_are_marked() -> None:
    # when the tests of the bus and of the Docker runtime are collected by marker
    broker = pytest_run(os.environ.copy(), "--collect-only", "-m", "broker", *NEEDS_BOTH)
    docker = pytest_run(os.environ.copy(), "--collect-only", "-m", "docker", *NEEDS_BOTH)
    # then each is marked for what it uses
    assert NEEDS_BOTH[0] in broker.stdout and NEEDS_BOTH[1] not in broker.stdout
    assert NEEDS_BOTH[1] in docker.stdout and NEEDS_BOTH[0] not in docker.stdout


def test_without_rabbitmqctl_or_an_engine_those_tests_are_skipped_saying_why() -> None:
    # given a machine without rabbitmqctl on PATH and without a Docker engine
    # when tests that need them run outside CI
    run = pytest_run(without_services(ci=False), *NEEDS_BOTH)
    # then they are skipped, each with what it needs, and the session passes
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout
    assert "needs RabbitMQ: rabbitmqctl is not on PATH" in run.stdout
    assert "needs the Docker engine" in run.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_missing_broker_or_engine_fails_rather_than_skips(ci: str) -> None:
    # given the same machine, in CI
    env = without_services(ci=True)
    env["CI"] = ci
    # when the same tests run
    run = pytest_run(env, *NEEDS_BOTH)
    # then the session fails, and says why
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 error" in run.stdout and "skipped" not in run.stdout
    assert "CI=true: a missing service fails the tests that need it" in run.stdout
