"""An image no pull can bring fails its task at once, through the real CLI and engine."""

from __future__ import annotations

import time

import pytest

from shared.images import LOCAL_BUSYBOX
from tests.conftest import Cluster

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("nonexistent.invalid/x:1", "no such host"),
        # a local image missing: its registry, on loopback, is one the policy refuses
        ("localhost/kube-nope:1", "a loopback address"),
    ],
)
def test_a_task_whose_image_cannot_be_pulled_fails_at_once_with_the_reason(
    cluster: Cluster, image: str, why: str
) -> None:
    # given a cluster on an engine that reaches no registry, and the default restart policy
    # when a task of an image that is nowhere is run, waiting for it
    began = time.monotonic()
    run = cluster.kube("run", "--name", "nopull", "--image", image, "--wait", "--", "true")
    took = time.monotonic() - began
    # then it ends failed within a few seconds (not after restarts with backoff)
    assert run.returncode == 1, run.stdout + run.stderr
    assert took < 10, (took, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    task_id = run.stdout.splitlines()[0].strip()
    # and `kube inspect` shows no restart, and why, and what to do instead
    inspect = cluster.kube("inspect", task_id)
    assert inspect.returncode == 0, inspect.stderr
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in inspect.stdout.splitlines())
        if value
    )
    assert fields["state"] == "failed" and fields["restarts"] == "0", inspect.stdout
    assert fields["attempt"] == "1", inspect.stdout
    error = fields["error"]
    assert error.startswith(f"image {image!r} is not on node"), error
    assert "no registry can be reached" in error and why in error, error
    assert "deploy/images/busybox.sh" in error and LOCAL_BUSYBOX in error, error
