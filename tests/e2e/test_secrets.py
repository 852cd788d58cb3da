"""Secrets and configs through the CLI, on a real broker and Docker engine: the container
reads them as files, and a secret's value is nowhere else (docs/secrets.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import urllib.request
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
from shared.specs import RestartMode, RestartPolicy
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.broker import dead_letter_bodies, stream_bodies
from tests.support.ports import free_port
from tests.support.stores import Stores
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


def digest_script(name: str) -> tuple[str, ...]:
    """A container that prints the digest of a secret, never the secret, then waits."""
    return ("sh", "-c", f"sha256sum /run/secrets/{name} | cut -d' ' -f1; sleep 600")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def serving_digest(client: Client, service: str) -> str | None:
    """The digest the service's one running task printed, once it runs and printed it."""
    running = [t for t in client.list() if t.name == service and t.state == TaskState.RUNNING]
    if len(running) != 1:
        return None
    return client.logs(running[0].id).strip() or None


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
    # /metrics served by both, to be searched too (the last --metrics-port given wins)
    ports = {"manager": free_port(), "node-1": free_port()}
    (tmp_path / "metrics-ports").write_text(" ".join(str(p) for p in ports.values()))
    worker = ("--files-dir", str(files_dir), "--metrics-port", str(ports["node-1"]))
    manager = ("--secrets-key-file", str(key), "--metrics-port", str(ports["manager"]))
    with running_cluster(
        vhost, tmp_path, docker_client, request, {"node-1": worker}, manager_args=manager
    ) as cluster:
        yield cluster


def kube(
    cluster: Cluster, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube", *args],
        input=stdin,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


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
    # and one with the very value, refused alike: a create tells nothing of the value
    same = kube(cluster, "secret", "create", "db-password", stdin=marker)
    assert (same.returncode, same.stderr) == (again.returncode, again.stderr)
    config_again = kube(cluster, "config", "create", "app", str(config))
    assert (
        config_again.returncode == again.returncode and "config app exists" in config_again.stderr
    )
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
        for port in (tmp_path / "metrics-ports").read_text().split():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
                places[f"metrics :{port}"] = got.read()
                assert b"# HELP kube_" in places[f"metrics :{port}"]
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


def test_an_update_rolls_the_services_using_it_and_rm_waits_until_none_does(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    postgres_database: str,
    request: pytest.FixtureRequest,
    files_dir: Path,
) -> None:
    store = Stores("postgresql", postgres_database, tmp_path).new()
    key = tmp_path / "secrets.key"
    create_key_file(key)
    workers: dict[str, tuple[str, ...]] = {"node-1": ("--files-dir", str(files_dir))}
    manager = ("--secrets-key-file", str(key))
    with running_cluster(
        vhost, tmp_path, docker_client, request, workers, manager_args=manager, store=store
    ) as cluster:
        # given a service on a PostgreSQL store whose task reads a secret
        assert kube(cluster, "secret", "create", "token", stdin="one").returncode == 0
        spec = TaskSpec(
            name="web",
            image=busybox_image,
            command=digest_script("token"),
            pull_policy="never",
            replicas=1,
            secrets=(SecretRef(name="token"),),
        )
        with client_for(cluster) as client:
            client.submit(spec)
            wait_for(lambda: serving_digest(client, "web") == sha("one"), timeout=60)
            # when the secret is removed while the service uses it: refused, naming it
            refused = kube(cluster, "secret", "rm", "token")
            assert refused.returncode != 0
            assert "secret token is in use by service web" in refused.stderr
            # when it is updated
            assert kube(cluster, "secret", "update", "token", stdin="two").returncode == 0
            # then the service rolls to a task that reads the new value, pinned in its spec
            wait_for(lambda: serving_digest(client, "web") == sha("two"), timeout=90)
            service = client.service("web")
            assert service.version == 2 and service.spec.secrets[0].version == 2
            listed = json.loads(kube(cluster, "secret", "ls", "--json").stdout)
            assert [(s["name"], s["version"], s["size"]) for s in listed] == [("token", 2, 3)]
            # and once the service is stopped, the secret may go
            assert kube(cluster, "stop", "web").returncode == 0
            wait_for(lambda: kube(cluster, "secret", "rm", "token").returncode == 0, timeout=60)
            assert json.loads(kube(cluster, "secret", "ls", "--json").stdout) == []


def test_a_manager_without_the_key_or_with_another_runs_all_else_and_says_why(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
    files_dir: Path,
) -> None:
    key, other = tmp_path / "secrets.key", tmp_path / "other.key"
    create_key_file(key)
    create_key_file(other)
    workers: dict[str, tuple[str, ...]] = {"node-1": ("--files-dir", str(files_dir))}
    with running_cluster(
        vhost, tmp_path, docker_client, request, workers, manager_args=()
    ) as cluster:
        plain = TaskSpec(name="plain", image=busybox_image, command=("true",), pull_policy="never")
        # given a manager started without a key: secret commands are refused, saying how
        refused = kube(cluster, "secret", "create", "pw", stdin="x")
        assert refused.returncode != 0 and "--secrets-key-file" in refused.stderr
        assert "--secrets-key-file" in kube(cluster, "config", "rm", "app").stderr
        assert kube(cluster, "config", "ls").returncode == 0  # names only: no key needed
        # and everything else runs
        with client_for(cluster) as client:
            done = client.submit(plain)
            assert client.wait(done, {TaskState.COMPLETED}, timeout=60).exit_code == 0
        # when a secret is made with one key, and the manager restarted with another
        cluster.stop("manager")
        cluster.manager_args = ("--secrets-key-file", str(key))
        cluster.start_manager()
        assert wait_for(lambda: kube(cluster, "secret", "create", "pw", stdin="x").returncode == 0)
        cluster.stop("manager")
        cluster.manager_args = ("--secrets-key-file", str(other))
        cluster.start_manager()
        with client_for(cluster) as client:
            reader = TaskSpec(
                name="reader",
                image=busybox_image,
                command=("true",),
                pull_policy="never",
                secrets=(SecretRef(name="pw"),),
                restart=RestartPolicy(policy=RestartMode.NEVER),
            )
            task = wait_for(lambda: client.submit(reader), what="the manager")
            # then the task fails with the reason, naming the key, never the value
            failed = client.wait(task, {TaskState.FAILED, TaskState.COMPLETED}, timeout=60)
            assert failed.state == TaskState.FAILED and failed.error is not None
            assert "secret pw version 1 was encrypted with key" in failed.error
            assert str(other) in failed.error
            # and the rest goes on: listing, and tasks without secrets
            assert json.loads(kube(cluster, "secret", "ls", "--json").stdout)[0]["name"] == "pw"
            again = client.submit(plain.model_copy(update={"id": None}))
            assert client.wait(again, {TaskState.COMPLETED}, timeout=60).exit_code == 0
