"""Secrets and configs through the CLI, on a real broker and Docker engine: the container
reads them as files, and a secret's value is nowhere else (docs/secrets.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kube.client import Client
from manager.secret_key import create_key_file
from shared.files import ConfigRef, SecretRef
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.broker import dead_letter_bodies, stream_bodies
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def files_dir() -> Iterator[Path]:
    """The workers' files on /dev/shm (a tmpfs here), removed after."""
    path = Path("/dev/shm") / f"kube-test-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def secret_cluster(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
    files_dir: Path,
) -> Iterator[Cluster]:
    key = tmp_path / "secrets.key"
    create_key_file(key)
    workers: dict[str, tuple[str, ...]] = {"node-1": ("--files-dir", str(files_dir))}
    with running_cluster(
        vhost,
        tmp_path,
        docker_client,
        request,
        workers,
        manager_args=("--secrets-key-file", str(key)),
    ) as cluster:
        yield cluster


def kube(
    cluster: Cluster, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cluster_cli(cluster), *args],
        input=stdin,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


def cluster_cli(cluster: Cluster) -> list[str]:
    import sys

    return [sys.executable, "-m", "kube"]


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def output_of(client: Client, task_id: str) -> str | None:
    """The task's output once it has all been written (the config is its last line)."""
    output = client.logs(task_id)
    return output if "level=debug" in output else None


def test_a_task_reads_its_secret_as_a_file_and_the_value_is_nowhere_else(
    secret_cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    cluster = secret_cluster
    marker = f"MARKER-{uuid.uuid4().hex}"
    # given a secret and a config made through the CLI
    made = kube(cluster, "secret", "create", "db-password", stdin=marker)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "app.conf"
    config.write_text("level=debug\n")
    assert kube(cluster, "config", "create", "app", str(config)).returncode == 0
    # and a second create of the secret with another value, refused (and dead-lettered)
    again = kube(cluster, "secret", "create", "db-password", stdin=marker + "-2")
    assert again.returncode != 0 and "exists" in again.stderr and marker not in again.stderr
    # when a task mounts both and prints what it sees (a digest of the secret, not it)
    script = (
        "sha256sum /run/secrets/db-password | cut -d' ' -f1;"
        " stat -c %a /run/secrets/db-password; cat /etc/app.conf;"
        " grep ' /run/secrets/db-password ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1;"
        " sleep 600"
    )
    spec = TaskSpec(
        name="reader",
        image=busybox_image,
        command=("sh", "-c", script),
        pull_policy="never",
        secrets=(SecretRef(name="db-password"),),
        configs=(ConfigRef(name="app", target="/etc/app.conf"),),
    )
    with client_for(cluster) as client:
        task_id = client.submit(spec)
        record = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        # then the container read the secret at /run/secrets/NAME, mode 0400, on a tmpfs,
        # read-only, and the config at its path
        digest = hashlib.sha256(marker.encode()).hexdigest()
        output = wait_for(lambda: output_of(client, task_id), what="the task's output")
        assert output.split() == [digest, "400", "level=debug", "tmpfs", "ro"]
        # and the marker is in no reply, event, record, log, label or store
        places: dict[str, bytes] = {
            "inspect": kube(cluster, "inspect", "--json", task_id).stdout.encode(),
            "secret ls": kube(cluster, "secret", "ls", "--json").stdout.encode(),
            "ps": kube(cluster, "ps", "--json").stdout.encode(),
            "events stream": b"\n".join(stream_bodies(cluster.url)),
            "dead letters": b"\n".join(dead_letter_bodies(cluster.url)),
            "store": (tmp_path / "manager.db").read_bytes(),
            "logs": cluster.logs().encode(),
        }
        container = docker_client.containers.get(record.container_id or "")
        places["docker inspect"] = json.dumps(container.attrs).encode()
        assert b"db-password" in places["secret ls"] and b"refused" not in places["secret ls"]
        assert places["dead letters"], "the refused create should be dead-lettered"
        found = [where for where, text in places.items() if marker.encode() in text]
        assert found == []
        # when the task is stopped, its files go with it
        client.stop(task_id)
        client.wait(task_id, {TaskState.COMPLETED, TaskState.FAILED}, timeout=60)
        files = Path(container.attrs["Mounts"][0]["Source"]).parent
        wait_for(lambda: not files.exists(), what="the attempt's files removed")
