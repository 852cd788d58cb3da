"""A service whose image cannot be pulled backs off instead of making tasks without end,
through the real CLI, broker and engine."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

IMAGE = "nonexistent.invalid/x:1"


def service_tasks(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    ps = cluster.kube("ps", "-a", "--json")
    assert ps.returncode == 0, ps.stderr
    return [t for t in json.loads(ps.stdout) if t["service"] == name]


def test_a_service_whose_image_cannot_be_pulled_backs_off_and_says_why(cluster: Cluster) -> None:
    # given a cluster on an engine that reaches no registry
    # when a service of an image that is nowhere is run, waiting for its replicas
    began = time.monotonic()
    flags = ("--name", "svcbad", "--replicas", "2", "--image", IMAGE, "--wait")
    run = cluster.kube("run", *flags, "--", "sleep", "100")
    took = time.monotonic() - began
    # then the wait fails promptly (not after --wait-timeout's 120 s) with the image reason
    assert run.returncode == 1, run.stdout + run.stderr
    assert took < 20, (took, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    assert "service svcbad cannot run: image 'nonexistent.invalid/x:1'" in run.stderr, run.stderr
    assert "no registry can be reached" in run.stderr, run.stderr
    # and its two tasks try again with a backoff: each fails a second time (10 s later)...
    tasks = wait_for(
        lambda: (
            (found := service_tasks(cluster, "svcbad"))
            and all(t["restart_count"] >= 2 for t in found)
            and found
        ),
        "both tasks to have tried their image again",
        timeout=40,
    )
    # ...and no task was ended or added meanwhile (it was 2 a second before)
    assert len(tasks) == 2, tasks
    assert all(t["state"] != "failed" and t["image_problem"] == "no-registry" for t in tasks)
    # and `kube services` says why the service runs nothing
    services = cluster.kube("services")
    assert services.returncode == 0, services.stderr
    assert "image cannot be pulled (no-registry)" in services.stdout, services.stdout
    # and stopping the service ends its tasks
    assert cluster.kube("stop", "svcbad").returncode == 0
