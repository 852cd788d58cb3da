"""The example of docs/python-client.md, run as written against a real cluster (with the
local busybox image for `busybox`: no registry answers on the test machines)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Cluster
from tests.support.docblocks import block

pytestmark = pytest.mark.e2e


def test_the_python_client_example_runs_a_task_and_sees_it_end(
    cluster: Cluster, busybox_image: str
) -> None:
    # given the example, with the local image
    code = block("docs/python-client.md", "example: python-client")
    assert '"image": "busybox"' in code
    code = code.replace('"image": "busybox"', f'"image": "{busybox_image}"')
    # when it runs
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KUBE_AMQP_URL": cluster.url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then it saw the task run, with an endpoint on one of the nodes, and end once stopped
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    first, last = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert first.startswith("running ('") and all(node in first for node in cluster.nodes)
    assert last == "task.completed"


def test_the_streaming_example_prints_both_streams_apart(
    cluster: Cluster, busybox_image: str
) -> None:
    code = block("docs/python-client.md", "example: python-sessions")
    code = code.replace('"image": "busybox"', f'"image": "{busybox_image}"')
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KUBE_AMQP_URL": cluster.url, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    assert sorted(done.stdout.splitlines()) == ["STDERR two", "STDOUT one"]
