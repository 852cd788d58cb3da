"""`kube up`: the plan and the broker decision (pure), then the local cluster for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import psutil
import pytest

from kube.cli import build_parser
from kube.client import Client, make_spec
from kube.localbroker import container_name
from kube.up import BrokerAction, UpOptions, broker_action, how_to_get_a_broker, plan
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import ROOT, fresh_vhost, remove_node_containers
from tests.support.images import rabbitmq_image
from tests.support.waiting import wait_for

# -- pure ------------------------------------------------------------------------------


def test_a_store_given_to_up_is_the_managers_instead_of_a_file() -> None:
    options = UpOptions(store="postgresql://kube@db/kube")
    manager = plan(options, Path("/tmp/x.db"))[0].argv
    assert manager[manager.index("--store") + 1] == "postgresql://kube@db/kube"
    assert "--db" not in manager


def test_plan_starts_the_manager_then_one_worker_per_node() -> None:
    options = UpOptions(workers=3, name_prefix="lab", scheduler="roundrobin", runtime="mock")
    children = plan(options, Path("/tmp/x.db"))
    assert [child.name for child in children] == ["manager", "lab-1", "lab-2", "lab-3"]
    manager = children[0].argv
    assert manager[1:4] == ["-m", "kube", "manager"]
    assert manager[manager.index("--db") + 1] == "/tmp/x.db" and "--store" not in manager
    assert manager[manager.index("--scheduler") + 1] == "roundrobin"
    worker = children[2].argv
    assert worker[worker.index("--name") + 1] == "lab-2"
    assert worker[worker.index("--runtime") + 1] == "mock"
    assert "--allow-exec" not in worker  # exec is off unless asked


def test_up_allow_exec_lets_every_worker_run_exec() -> None:
    args = build_parser().parse_args(["up", "--allow-exec", "--runtime", "mock"])
    assert args.allow_exec
    options = UpOptions(workers=2, allow_exec=args.allow_exec)
    workers = plan(options, Path("/tmp/x.db"))[1:]
    assert [("--allow-exec" in child.argv) for child in workers] == [True, True]


@pytest.mark.parametrize(
    ("start", "interactive", "local", "docker_ok", "action"),
    [
        (True, False, True, True, BrokerAction.START),
        (False, True, True, True, BrokerAction.ASK),
        (False, False, True, True, BrokerAction.EXPLAIN),
        (True, True, False, True, BrokerAction.EXPLAIN),  # a remote broker: not ours to start
        (True, True, True, False, BrokerAction.EXPLAIN),  # no Docker to start it with
    ],
)
def test_broker_action(
    start: bool, interactive: bool, local: bool, docker_ok: bool, action: BrokerAction
) -> None:
    got = broker_action(start=start, interactive=interactive, local=local, docker_ok=docker_ok)
    assert got is action


def test_how_to_get_a_broker_names_the_ways() -> None:
    settings = Settings(amqp_url="amqp://guest:secret@localhost:5672/%2F")
    with_docker = how_to_get_a_broker(settings, local=True, docker_ok=True)
    assert "--start-broker" in with_docker and "docker run" in with_docker
    assert "secret" not in with_docker
    without = how_to_get_a_broker(settings, local=True, docker_ok=False)
    assert "apt-get install rabbitmq-server" in without
    remote = how_to_get_a_broker(settings, local=False, docker_ok=True)
    assert "KUBE_AMQP_URL" in remote


def test_how_to_get_a_broker_publishes_the_port_of_the_url() -> None:
    # given a URL on port 5673 (5672 taken, say); when the hint says how to start one
    hint = how_to_get_a_broker(
        Settings(amqp_url="amqp://guest:guest@localhost:5673/%2F"), local=True, docker_ok=True
    )
    # then the container it suggests answers where the URL points
    assert "docker run -d -p 5673:5672 " in hint


# -- for real --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kube_up(url: str, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.PIPE  # noqa: SIM115 - closed at teardown
    return subprocess.Popen(
        [sys.executable, "-m", "kube", "up", *args],
        env={**os.environ, "KUBE_AMQP_URL": url, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )


@pytest.fixture
def prefix(docker_client: docker.DockerClient) -> Iterator[str]:
    prefix = f"up{uuid.uuid4().hex[:6]}"
    yield prefix
    for i in (1, 2):
        remove_node_containers(docker_client, f"{prefix}-{i}")


def test_up_runs_a_cluster_and_ctrl_c_stops_it_leaving_nothing(
    vhost: str,
    prefix: str,
    tmp_path: Path,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    # given `kube up --workers 2` against a fresh vhost
    log = tmp_path / "up.log"
    up = kube_up(vhost, "--workers", "2", "--name-prefix", prefix, log=log)
    nodes = [f"{prefix}-1", f"{prefix}-2"]
    children: list[psutil.Process] = []
    try:
        with Client(Settings(amqp_url=vhost, request_timeout=2)) as client:
            # then both workers become ready
            wait_for(
                lambda: {n.name for n in client.nodes() if n.status.value == "ready"} == set(nodes),
                timeout=60,
                what=f"two ready nodes; log:\n{log.read_text()}",
            )
            children = psutil.Process(up.pid).children(recursive=True)
            assert len(children) == 3, children
            # and a task runs on one of them, in a container labelled with its node
            spec = {"name": "up-task", "image": busybox_image, "pull_policy": "never"}
            task_id = client.submit(make_spec({**spec, "command": ["sleep", "300"]}))
            task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        assert task.state == TaskState.RUNNING, task.error
        assert task.node in nodes
        assert docker_client.containers.get(str(task.container_id)).status == "running"

        # when the user presses Ctrl-C
        up.send_signal(signal.SIGINT)
        code = up.wait(60)

        # then kube up exits 0, every child has exited, and no container is left
        output = log.read_text()
        assert code == 0, output
        assert not [c for c in children if _alive(c)], output
        for node in nodes:
            left = docker_client.containers.list(all=True, filters={"label": f"kube.node={node}"})
            assert left == [], output
        assert "removed 1 task container(s)" in output
        # and its hint named an image this engine has
        hint = next(line for line in output.splitlines() if "kube run --name hello" in line)
        docker_client.images.get(hint.split("--image ")[1].split()[0])
    finally:
        for proc in [*children, psutil.Process(up.pid) if up.poll() is None else None]:
            if proc is not None and _alive(proc):
                proc.kill()
        up.wait(10)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.usefixtures("docker_client")  # with an engine, it offers `docker run`
def test_up_without_a_broker_says_how_to_get_one() -> None:
    # given a URL where nothing listens, and no terminal to ask on
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    # when kube up runs
    up = kube_up(url, "--workers", "1")
    _, err = up.communicate(timeout=60)
    # then it exits with the broker-down code and says how to get a broker
    assert up.returncode == 5, err
    text = err.decode()
    assert "no RabbitMQ answers" in text and "--start-broker" in text and "docker run" in text
    assert "Traceback" not in text


def test_up_start_broker_fails_cleanly_when_the_image_is_missing(
    docker_client: docker.DockerClient,
) -> None:
    # given no broker, and a broker image that is neither local nor pullable here
    port = free_port()
    url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    image = "localhost:1/kube-test-no-such-rabbitmq:0"
    # when kube up is asked to start one
    up = kube_up(url, "--start-broker", "--broker-image", image)
    _, err = up.communicate(timeout=120)
    # then it says the image could not be had, and leaves no container
    text = err.decode()
    assert up.returncode == 5, text
    assert image in text and "could not be pulled" in text and "Traceback" not in text
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_name(port))


@pytest.fixture
def broker_port(docker_client: docker.DockerClient) -> Iterator[int]:
    """A free port for a broker kube up starts; whatever broker container is left, removed."""
    port = free_port()
    yield port
    for left in docker_client.containers.list(all=True, filters={"name": container_name(port)}):
        left.remove(force=True)


def test_up_start_broker_starts_one_runs_the_cluster_on_it_and_removes_it(
    docker_client: docker.DockerClient, tmp_path: Path, broker_port: int
) -> None:
    # given no broker on a port, and a broker image on this machine (the Debian stand-in)
    port = broker_port
    url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    prefix = f"upb{uuid.uuid4().hex[:6]}"
    log = tmp_path / "up.log"
    # when kube up is told to start one
    flags = ("--workers", "1", "--runtime", "mock", "--name-prefix", prefix)
    up = kube_up(url, "--start-broker", "--broker-image", rabbitmq_image(), *flags, log=log)
    try:
        # then it runs the broker in a container of its own, and the cluster on it
        wait_for(
            lambda: "kube run" in log.read_text() or up.poll() is not None,
            timeout=120,
            what="the cluster to be ready",
        )
        assert up.poll() is None, log.read_text()
        broker = docker_client.containers.get(container_name(port))
        assert broker.labels["kube.role"] == "broker"
        with Client(Settings(amqp_url=url, request_timeout=5)) as client:
            task_id = client.submit(make_spec({"name": "on-started", "image": "mock/img"}))
            task = client.wait(task_id, {TaskState.RUNNING}, timeout=30)
        assert task.node == f"{prefix}-1", task.error
        # and Ctrl-C stops the cluster and removes the broker it started
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, log.read_text()
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container_name(port))
    finally:
        kill_tree(up)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_stopped_while_its_broker_boots_removes_the_broker(
    docker_client: docker.DockerClient, tmp_path: Path, sig: signal.Signals, broker_port: int
) -> None:
    # given kube up starting a broker (RabbitMQ takes seconds to boot)
    port = broker_port
    url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    log = tmp_path / "up.log"
    up = kube_up(url, "--start-broker", "--broker-image", rabbitmq_image(), log=log)
    try:
        wait_for(
            lambda: docker_client.containers.list(all=True, filters={"name": container_name(port)}),
            timeout=60,
            what="the broker container",
        )
        # when it is stopped before the broker serves
        up.send_signal(sig)
        # then it exits cleanly, says so, and the broker container is gone
        assert up.wait(60) == 0, log.read_text()
        assert "stopped before the cluster started" in log.read_text()
        assert "Traceback" not in log.read_text()
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container_name(port))
    finally:
        kill_tree(up)


def test_up_with_a_wrong_password_reports_the_broker_refusal(vhost: str) -> None:
    # given a broker that answers but refuses the credentials
    url = vhost.replace("guest:guest@", "guest:wrong@")
    # when kube up runs
    up = kube_up(url)
    _, err = up.communicate(timeout=60)
    # then it does not offer to start another broker: it reports the refusal
    text = err.decode()
    assert up.returncode == 5, text
    assert "authentication failed for user 'guest'" in text and "--start-broker" not in text


def test_up_with_the_mock_runtime_stops_on_sigterm(vhost: str, tmp_path: Path) -> None:
    # given a one-worker cluster on the mock runtime (no containers at all)
    log = tmp_path / "up.log"
    prefix = f"upm{uuid.uuid4().hex[:6]}"
    up = kube_up(vhost, "--workers", "1", "--runtime", "mock", "--name-prefix", prefix, log=log)
    try:
        with Client(Settings(amqp_url=vhost, request_timeout=2)) as client:
            wait_for(
                lambda: (
                    [n.name for n in client.nodes() if n.status.value == "ready"] == [f"{prefix}-1"]
                ),
                timeout=60,
                what="the mock worker",
            )
        # when it gets SIGTERM (as from systemd or kill)
        up.send_signal(signal.SIGTERM)
        # then it stops cleanly, touching no container
        assert up.wait(60) == 0, log.read_text()
        assert "removed" not in log.read_text()
    finally:
        kill_tree(up)


def test_up_with_a_broker_list_whose_first_does_not_answer_runs_on_the_next(
    vhost: str, tmp_path: Path
) -> None:
    # given a URL list whose first broker is a closed port: nothing to start a broker for
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/{vhost.rpartition('/')[2]}"
    urls = f"{dead},{vhost}"
    log = tmp_path / "up.log"
    prefix = f"upl{uuid.uuid4().hex[:6]}"
    # when kube up runs on it
    up = kube_up(urls, "--workers", "1", "--runtime", "mock", "--name-prefix", prefix, log=log)
    try:
        # then its manager and worker come up on the second broker
        with Client(Settings(amqp_url=urls, request_timeout=2)) as client:
            wait_for(
                lambda: (
                    [n.name for n in client.nodes() if n.status.value == "ready"] == [f"{prefix}-1"]
                ),
                timeout=60,
                what="the mock worker",
            )
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, log.read_text()
        text = log.read_text()
        assert "kube up: starting" not in text  # no broker container was started
        assert "guest:guest@127.0.0.1" not in text  # and no password printed
    finally:
        kill_tree(up)


def kill_tree(up: subprocess.Popen[bytes]) -> None:
    """After a failed test: kube up and its children (in a process group of their own)."""
    if up.poll() is None:
        for child in psutil.Process(up.pid).children(recursive=True):
            child.kill()
        up.kill()
        up.wait(10)


@pytest.fixture
def other_vhost() -> Iterator[str]:
    """A second vhost, for a second cluster on the same broker and engine."""
    with fresh_vhost() as url:
        yield url


def test_two_clusters_on_one_engine_with_the_same_node_names_never_touch_each_others_containers(
    vhost: str,
    other_vhost: str,
    prefix: str,
    tmp_path: Path,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    # given two `kube up` on two vhosts and one engine, with the same node name, a task each
    logs = {url: tmp_path / f"up-{i}.log" for i, url in enumerate((vhost, other_vhost))}
    ups = {
        url: kube_up(url, "--workers", "1", "--name-prefix", prefix, log=log)
        for url, log in logs.items()
    }
    node = f"{prefix}-1"
    try:
        containers = {}
        for url in ups:
            with Client(Settings(amqp_url=url, request_timeout=2)) as client:
                wait_for(
                    lambda c=client: [n.status.value for n in c.nodes()] == ["ready"],
                    timeout=60,
                    what=f"a ready node; log:\n{logs[url].read_text()}",
                )
                spec = {"name": "mine", "image": busybox_image, "pull_policy": "never"}
                task_id = client.submit(make_spec({**spec, "command": ["sleep", "300"]}))
                task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
                assert task.node == node, task.error
                containers[url] = (client, task_id, str(task.container_id))
        labels = {
            c.labels["kube.cluster"]
            for c in docker_client.containers.list(filters={"label": f"kube.node={node}"})
        }
        assert len(labels) == 2  # one node name, two clusters
        # when the first cluster's `kube up` is stopped with Ctrl-C
        first, second = ups
        ups[first].send_signal(signal.SIGINT)
        assert ups[first].wait(60) == 0, logs[first].read_text()
        # then its own container is removed, and the other cluster's runs on, untouched,
        # through heartbeats of its worker that list it
        assert "removed 1 task container(s)" in logs[first].read_text()
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(containers[first][2])
        _, task_id, container_id = containers[second]
        assert docker_client.containers.get(container_id).status == "running"
        with Client(Settings(amqp_url=second, request_timeout=5)) as client:
            seen = client.nodes()[0].last_heartbeat
            wait_for(
                lambda: (client.nodes()[0].last_heartbeat - seen).total_seconds() > 4,
                timeout=30,
                what="heartbeats of the second cluster's worker",
            )
            task = client.get(task_id)
        assert (task.state, task.attempt) == (TaskState.RUNNING, 1), task.error
        assert docker_client.containers.get(container_id).status == "running"
    finally:
        for up in ups.values():
            if up.poll() is None:
                up.send_signal(signal.SIGINT)
                try:
                    up.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(up.pid, signal.SIGKILL)
                    up.wait(10)
