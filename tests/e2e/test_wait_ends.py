"""Waits that cannot end as asked end at once, through the real `kube`: a scale that
another client overrides (exit 7), a wait whose manager died (exit 3), not after their
whole timeout with "carries on"."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kube.client import Client
from shared.settings import Settings
from tests.conftest import ROOT, Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

CHANGED, NO_MANAGER = 7, 3


def waiting(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    """`kube ARGS` left running, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "kube", *args],
        env=cluster.env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def ended(proc: subprocess.Popen[str], within: float) -> tuple[int, str, float]:
    """The exit code and stderr of a waiting kube, and how long it took to end."""
    began = time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"kube still waited after {within:g}s: {err}")
    return proc.returncode, err, time.monotonic() - began


def ran(cluster: Cluster, image: str, name: str, *flags: str) -> str:
    """`kube run` of `sleep 300` with these flags; the id it printed."""
    run = cluster.kube(
        *("run", "--name", name, "--image", image, "--pull-policy", "never", *flags),
        *("--", "sleep", "300"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout.split()[0]


def replicas(cluster: Cluster, name: str) -> int:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        return client.service(name).replicas


def test_a_scale_overridden_by_another_client_ends_at_once(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a service whose tasks no node can take (they stay pending)
    ran(cluster, busybox_image, "web", "--replicas", "1", "--constraint", "zone=nowhere")
    # and a user waiting for it to scale to 3
    scale = waiting(cluster, "scale", "web", "3", "--wait-timeout", "120")
    wait_for(lambda: replicas(cluster, "web") == 3, what="the scale to 3", timeout=30)
    # when another client scales it to 1
    other = cluster.kube("scale", "web", "1", "-d")
    assert other.returncode == 0, other.stderr
    # then the first wait ends soon, with its own code, saying the target changed
    code, err, took = ended(scale, within=60)
    assert code == CHANGED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("kube: stopped waiting: service web is now to keep 1"), last
    assert "another request changed it" in last and took < 30, (last, took)
    # and the other client's count stands
    assert replicas(cluster, "web") == 1


def test_a_wait_whose_manager_is_killed_says_no_manager_answers(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task whose container takes 10 s to stop (sleep as PID 1 ignores SIGTERM)
    task_id = ran(cluster, busybox_image, "slow", "--wait")
    # and a user waiting for its stop
    stop = waiting(cluster, "--timeout", "3", "stop", task_id, "--wait-timeout", "120")

    def asked_to_stop() -> bool:
        with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
            return client.get(task_id).desired_state == "stopped"

    wait_for(asked_to_stop, what="the stop taken", timeout=30)
    # when the manager is killed (kill -9)
    cluster.kill("manager")
    # then the wait ends within seconds, saying no manager answers, with exit code 3
    code, err, took = ended(stop, within=60)
    assert code == NO_MANAGER, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"kube: stopped waiting for the stop of {task_id}: no manager"), last
    assert "carries on" not in last and took < 30, (last, took)
