"""A command no manager answers in time, on a vhost where a manager ran, stays queued:
the CLI says so with its own exit code, and what to do, and the task runs when a manager
starts (retrying would have made two tasks)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube.cli import NO_MANAGER, QUEUED, REFUSED
from tests.conftest import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def headless(vhost: str, tmp_path: Path) -> Iterator[Cluster]:
    """A vhost whose manager ran (its exchanges and queues are there) and has stopped."""
    cluster = Cluster(vhost, tmp_path, nodes=[])
    try:
        cluster.start_manager()
        wait_for(lambda: cluster.kube("nodes").returncode == 0, timeout=60, what="a manager")
        cluster.stop("manager")
        yield cluster
    finally:
        for name in list(cluster.procs):
            cluster.stop(name)


def test_a_run_no_manager_confirms_is_queued_and_runs_when_a_manager_starts(
    headless: Cluster, busybox_image: str
) -> None:
    # when a task is submitted while no manager runs
    run = headless.kube(
        "--timeout", "2", "run", "--id", "queued-1", "--name", "queued", "--image", busybox_image,
        "--", "sleep", "300",
    )  # fmt: skip
    # then the CLI exits with the queued code, in one line that says what happens next
    assert run.returncode == QUEUED, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert run.stderr.startswith("kube: queued-1 is queued but not confirmed:")
    assert "it will run when a manager starts" in run.stderr
    assert "`kube inspect queued-1`" in run.stderr and "`kube stop queued-1`" in run.stderr
    # and a query, which the broker does not keep, is plain "no manager" (exit 3)
    assert headless.kube("--timeout", "2", "ps").returncode == NO_MANAGER

    # when a manager starts, then the task it was sent is there: nothing was lost
    headless.start_manager()
    inspect = wait_for(
        lambda: (found := headless.kube("inspect", "queued-1", "--json")).returncode == 0 and found,
        timeout=60,
        what="the queued task",
    )
    assert json.loads(inspect.stdout)["name"] == "queued"


def test_a_scale_no_manager_confirms_is_queued_too(headless: Cluster) -> None:
    # (a stop asks first which task its text names: a query, so no manager is exit 3)
    scale = headless.kube("--timeout", "2", "scale", "web", "2")
    assert scale.returncode == QUEUED, scale.stderr
    assert scale.stderr.startswith("kube: service.scale web is queued but not confirmed:")


def test_a_service_no_manager_confirms_is_queued_by_its_name(
    headless: Cluster, busybox_image: str
) -> None:
    run = headless.kube(
        "--timeout", "2", "run", "--name", "qsvc", "--replicas", "2", "--image", busybox_image,
    )  # fmt: skip
    assert run.returncode == QUEUED, run.stderr
    assert run.stderr.startswith("kube: service qsvc is queued but not confirmed:")
    assert "`kube scale qsvc 0`" in run.stderr and run.stdout == ""


def test_the_advice_of_a_queued_run_cancels_it(headless: Cluster, busybox_image: str) -> None:
    # given a task queued while no manager runs
    run = headless.kube(
        "--timeout", "2", "run", "--id", "queued-2", "--name", "queued", "--image", busybox_image,
        "--pull-policy", "never", "--", "sleep", "300",
    )  # fmt: skip
    assert run.returncode == QUEUED, run.stderr
    # when the user follows the advice, `kube stop ID`, still with no manager
    started = time.monotonic()
    stop = headless.kube("--timeout", "3", "stop", "queued-2")
    took = time.monotonic() - started
    # then the stop is queued too (not "no manager", exit 3), and says so
    assert stop.returncode == QUEUED, stop.stderr
    assert stop.stderr.startswith("kube: task.stop queued-2 is queued but not confirmed:")
    # and the name lookup and the stop waited --timeout in all, not twice: as it says
    assert "no manager answered within 3s" in stop.stderr, stop.stderr
    assert took < 5.5, f"kube stop took {took:.1f}s with --timeout 3"
    # and when a manager starts, the task ends without having run a container
    headless.start_manager()

    def state() -> str | None:
        found = headless.kube("inspect", "queued-2", "--json")
        return json.loads(found.stdout)["state"] if found.returncode == 0 else None

    wait_for(lambda: state() in ("stopped", "completed"), timeout=60, what="the task stopped")
    assert json.loads(headless.kube("inspect", "queued-2", "--json").stdout)["node"] is None


def test_a_node_command_is_refused_clearly_not_left_queued(headless: Cluster) -> None:
    # when a node is cordoned while no manager runs, then nothing is queued: exit 3
    cordon = headless.kube("--timeout", "2", "cordon", "nosuch")
    assert cordon.returncode == NO_MANAGER, cordon.stderr
    # when a manager runs, then a node it does not know is refused, naming it (exit 4)
    headless.start_manager()
    wait_for(lambda: headless.kube("nodes").returncode == 0, timeout=60, what="a manager")
    for verb in ("cordon", "drain"):
        refused = headless.kube(verb, "nosuch")
        assert refused.returncode == REFUSED, refused.stderr
        assert refused.stderr.startswith("kube: unknown node 'nosuch' (the nodes: none")
