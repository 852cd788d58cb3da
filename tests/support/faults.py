"""Tools for the fault-injection suite: a reconnecting publisher, the invariant, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests.exceptions

from kube.client import Client
from shared import topology
from shared.codec import encode
from shared.errors import KubeError
from shared.models import TaskRecord, TaskSpec
from shared.rpc import RpcChannel
from shared.settings import Settings
from shared.states import TaskState
from tests.support.waiting import wait_for


def publish_all(url: str, specs: Iterable[TaskSpec], pause: float = 0.0) -> None:
    """Publish every spec to kube.commands, reconnecting through broker restarts.

    A publish that may or may not have reached the broker is sent again: the task id
    makes the second one harmless.
    """
    channel: RpcChannel | None = None
    for spec in specs:
        deadline = time.monotonic() + 120
        while True:
            try:
                if channel is None:
                    channel = RpcChannel(Settings(amqp_url=url), "fault-publisher")
                channel.publish(
                    topology.COMMANDS, topology.SUBMIT_KEY, encode(spec), message_id=spec.id
                )
                break
            except KubeError:
                if channel is not None:
                    channel.close()
                channel = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if pause:
            time.sleep(pause)
    if channel is not None:
        channel.close()


def tasks_now(url: str) -> dict[str, TaskRecord]:
    with Client(Settings(amqp_url=url, request_timeout=5)) as client:
        return {task.id: task for task in client.list()}


def live_containers(client: docker.DockerClient, nodes: Iterable[str]) -> Counter[str]:
    """How many running containers each task has on the given nodes."""
    counts: Counter[str] = Counter()
    for node in nodes:
        for container in client.containers.list(
            filters={"label": f"kube.node={node}"}, ignore_removed=True
        ):
            counts[container.labels["kube.task-id"]] += 1
    return counts


@dataclass
class DoubleWatch:
    """Samples running containers in the background and remembers any task seen twice."""

    client: docker.DockerClient
    nodes: list[str]
    doubles: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> DoubleWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                counts = live_containers(self.client, self.nodes)
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                continue  # the engine is restarting
            for task_id, count in counts.items():
                if count > 1:
                    self.doubles[task_id] = max(count, self.doubles.get(task_id, 0))


def all_running_once(
    url: str, ids: list[str], client: docker.DockerClient, nodes: list[str], timeout: float = 120
) -> dict[str, TaskRecord]:
    """Wait until every id runs, then check each has exactly one live container, its own."""

    def settled() -> dict[str, TaskRecord] | None:
        tasks = tasks_now(url)
        if all(i in tasks and tasks[i].state == TaskState.RUNNING for i in ids):
            return tasks
        return None

    tasks = wait_for(settled, what="every task to run", timeout=timeout, interval=0.5)
    counts = wait_for(
        lambda: (c := live_containers(client, nodes)) and all(c[i] == 1 for i in ids) and c,
        what="exactly one live container per task",
        timeout=60,
        interval=0.5,
    )
    assert sum(counts[i] for i in ids) == len(ids)
    return tasks


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def rabbitmqctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=timeout)


def broker_answers() -> bool:
    result = subprocess.run(
        ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], capture_output=True, timeout=60
    )
    return result.returncode == 0


def restart_broker_app(down_for: float = 2.0) -> None:
    """rabbitmqctl stop_app, then start_app: every connection is closed (320)."""
    rabbitmqctl("stop_app")
    time.sleep(down_for)  # the outage itself: components must ride it out
    rabbitmqctl("start_app")
    wait_for(broker_answers, what="RabbitMQ to answer", timeout=120, interval=1)


def restart_broker_node(down_for: float = 2.0) -> None:
    """A full stop of the RabbitMQ node, then a start, as after a reboot."""
    rabbitmqctl("stop")
    time.sleep(down_for)  # the outage itself
    subprocess.run(["rabbitmq-server", "-detached"], check=True, capture_output=True, timeout=60)
    wait_for(broker_answers, what="RabbitMQ to come back", timeout=180, interval=1)


def restart_dockerd(log: Path) -> None:
    """Stop the Docker engine (its containers die with it) and start it again."""
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="dockerd to stop", timeout=60)
    with open(log, "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, start_new_session=True)
    wait_for(
        lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0,
        what="dockerd to answer",
        timeout=60,
        interval=0.5,
    )


def restart_postgres() -> None:
    """Restart the machine's PostgreSQL cluster `main` (every connection to it is closed),
    and wait until it answers again."""
    import psycopg

    from tests.support.stores import POSTGRES_URL

    (version,) = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1:]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def answers() -> bool:
        try:
            with psycopg.connect(f"{POSTGRES_URL}postgres", connect_timeout=2) as db:
                db.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    wait_for(answers, what="PostgreSQL to answer", timeout=120, interval=0.5)
