"""A worker that lies about its labels and capacity draws nothing an operator kept from it
(issue 12, "a worker that lies")."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_operator_labels_and_caps_beat_a_lying_worker(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> None:
    # given an honest node, and a worker that claims its label and 1,000 cpus
    workers = {
        "honest": ("--runtime", "mock", "--cpus", "2"),
        "liar": ("--runtime", "mock", "--cpus", "1000", "--label", "secure=yes"),
    }
    with (
        running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster,
        Client(Settings(amqp_url=vhost, request_timeout=10)) as client,
    ):
        honest, liar = cluster.nodes
        # when the operator labels both and caps the liar
        for args in (
            ("label", honest, "secure=yes"),
            ("label", liar, "secure=no", "zone=b"),
            ("cap", liar, "--cpus", "2", "--memory", "1g"),
        ):
            done = cluster.kube(*args)
            assert done.returncode == 0, done.stderr

        # then the node list says what the operator set, across the liar's heartbeats
        def liar_record() -> dict[str, object]:
            listed = json.loads(cluster.kube("nodes", "--json").stdout)
            return next(n for n in listed if n["name"] == liar)

        wait_for(lambda: liar_record()["cpus"] == 2, what="the liar capped")
        record = liar_record()
        assert record["labels"] == {"secure": "no", "zone": "b"}
        assert record["memory"] == 1024**3
        # and every task that needs secure=yes goes to the honest node
        spec = TaskSpec(name="secret", image="busybox", constraints={"secure": "yes"})
        ids = [client.submit(spec) for _ in range(6)]
        placed = [client.wait(i, {TaskState.RUNNING}, timeout=30) for i in ids]
        assert {task.node for task in placed} == {honest}
        # and a bad label is a usage error naming it, not a traceback
        bad = cluster.kube("label", liar, "novalue")
        assert bad.returncode == 2 and "key=value" in bad.stderr
        assert "Traceback" not in bad.stderr
