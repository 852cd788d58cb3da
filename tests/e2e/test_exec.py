"""`kube exec` for real: the CLI, a manager and workers as processes, RabbitMQ, Docker.

Node `ok` runs its worker with --allow-exec, node `no` without. Each test checks that
nothing is left behind: no consumer or queue on the broker, no thread on the worker or
the manager, no exec process in the container.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import termios
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bench.pty_command import PtyCommand
from tests.conftest import AMQP_HOST, Cluster, rabbitmqctl, running_cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

UNTIL_STOPPED = "trap 'exit 0' TERM; sleep 300 & wait"


@pytest.fixture
def cluster(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    workers = {"ok": ("--allow-exec", "--label", "exec=on"), "no": ("--label", "exec=off")}
    with running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster:
        yield cluster


def started(cluster: Cluster, image: str, exec_label: str) -> str:
    """A task that runs until stopped, on the node with that exec label; its id."""
    done = cluster.kube(
        "run", "--name", f"x{exec_label}", "--image", image, "--pull-policy", "never",
        "--constraint", f"exec={exec_label}", "--wait", "--", "sh", "-c", UNTIL_STOPPED,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[0].strip()


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def broker_consumers(url: str) -> dict[str, int]:
    """Every queue of the vhost with its consumers (server-named reply queues included)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", url.rsplit("/", 1)[1], "name", "consumers"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    rows = (line.split() for line in out.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


class Leftovers:
    """What a session could leave behind, counted before it and compared after."""

    def __init__(self, cluster: Cluster, docker_client: docker.DockerClient, task: str) -> None:
        self.cluster = cluster
        self.docker = docker_client
        self.container = docker_client.containers.list(filters={"label": f"kube.task-id={task}"})[0]
        # rabbitmqctl may answer 0 for a queue it could not ask in time: the baseline is
        # a reading in which the manager's and the workers' queues have their consumer
        self.before = wait_for(self._settled, what="a full reading of the broker")

    def _settled(self) -> tuple[dict[str, int], int, int] | None:
        reading = self.now()
        counted = reading[0]
        queues = ("kube.manager.commands", "kube.manager.results", "kube.manager.queries.quorum")
        nodes = tuple(q for q in counted if q.startswith("kube.node."))  # the workers' own
        return reading if nodes and all(counted.get(q) == 1 for q in queues + nodes) else None

    def now(self) -> tuple[dict[str, int], int, int]:
        procs = self.cluster.procs
        worker = next(name for name in procs if name.endswith("-ok"))
        return (
            broker_consumers(self.cluster.url),
            threads(procs["manager"].pid),
            threads(procs[worker].pid),
        )

    def running(self, command: str) -> bool:
        """Whether a process of the container runs this command line."""
        return any(" ".join(p).endswith(command) for p in self.container.top()["Processes"])

    def running_execs(self) -> list[str]:
        ids = self.docker.api.inspect_container(self.container.id)["ExecIDs"] or []
        return [e for e in ids if self.docker.api.exec_inspect(e)["Running"]]

    def check(self) -> None:
        seen: list[object] = []

        def same() -> bool:
            seen[:] = [self.now()]
            return seen[0] == self.before

        try:
            wait_for(same, what="the count before", timeout=20)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: before {self.before}, now {seen}") from None
        wait_for(lambda: self.running_execs() == [], what="no exec running", timeout=10)


def history(cluster: Cluster, task: str) -> str:
    shown = cluster.kube("inspect", task)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_exec_returns_the_output_and_the_exit_code_and_forwards_piped_stdin(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    task = started(cluster, busybox_image, "on")
    warm = cluster.kube("exec", task, "--", "true")  # thread pools grow on first use
    assert warm.returncode == 0, warm.stderr
    leftovers = Leftovers(cluster, docker_client, task)

    done = cluster.kube("exec", task, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    piped = subprocess.run(
        [sys.executable, "-m", "kube", "exec", task, "--", "cat"],
        input="hi\nthere\n", env=cluster.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (piped.returncode, piped.stdout) == (0, "hi\nthere\n"), piped.stderr
    leftovers.check()

    # every exec is in the task's history, with who asked, and how it ended
    shown = history(cluster, task)
    assert "exec by guest: sh -c 'echo out; echo err >&2; exit 3'" in shown
    assert "exec by guest ended, exit code 3: sh -c" in shown
    assert "exec by guest ended, exit code 0: cat" in shown


def test_exec_it_is_a_terminal_with_its_size_and_ctrl_c(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    task = started(cluster, busybox_image, "on")
    assert cluster.kube("exec", task, "--", "true").returncode == 0
    leftovers = Leftovers(cluster, docker_client, task)
    argv = [sys.executable, "-m", "kube", "exec", "-it", task, "--", "sh"]
    terminal = PtyCommand(argv, cluster.env, size=(30, 100))
    try:
        seen = terminal.read_until(b"# ")  # busybox sh's prompt, as root
        terminal.write(b"stty size\r")
        seen = terminal.read_until(b"30 100", start=seen)
        terminal.resize(40, 120)  # the window changes: SIGWINCH to kube

        def new_size() -> int:  # the change races the next command: ask until it shows
            terminal.write(b"stty size\r")
            return terminal.read_until(b"40 120", timeout=1, start=seen)

        seen = wait_for(new_size, what="the new size inside", timeout=20)
        terminal.write(b"sleep 100; echo slept\r")
        seen = terminal.read_until(b"sleep 100; echo slept\r\n", start=seen)
        # once sleep runs (before, the shell's line editor would read the key as text)
        wait_for(lambda: leftovers.running("sleep 100"), what="sleep in the container")
        terminal.write(b"\x03")  # Ctrl-C reaches sleep, in the container, not kube
        seen = terminal.read_until(b"# ", start=seen)
        assert b"slept" not in terminal.output[seen:]
        terminal.write(b"exit 5\r")
        assert terminal.wait(timeout=30) == 5
        attrs = termios.tcgetattr(terminal.fd)
        assert attrs[3] & termios.ECHO and attrs[3] & termios.ICANON  # kube put it back
    finally:
        terminal.close()
    leftovers.check()
    assert "exec by guest with a terminal: sh" in history(cluster, task)


def test_exec_is_refused_without_the_worker_flag_and_to_a_user_no_operator(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task on the node whose worker runs without --allow-exec
    task = started(cluster, busybox_image, "off")
    done = cluster.kube("exec", task, "--", "true")
    assert done.returncode == 125
    assert "--allow-exec" in done.stderr and "security policy" in done.stderr

    # and a broker user that may publish anything but is no operator of the manager
    user, password = f"nobody-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    vhost = cluster.url.rsplit("/", 1)[1]
    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        as_user = subprocess.run(
            [sys.executable, "-m", "kube", "exec", task, "--", "true"],
            env={**cluster.env, "KUBE_AMQP_URL": f"amqp://{user}:{password}@{AMQP_HOST}/{vhost}"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        rabbitmqctl("delete_user", user)
    assert as_user.returncode == 125, as_user.stderr
    assert f"user '{user}' may not exec" in as_user.stderr

    # then both refusals are in the task's history, each naming who asked
    shown = history(cluster, task)
    assert "security policy" in shown and f"user '{user}' may not exec" in shown


def heartbeats(cluster: Cluster) -> dict[str, str]:
    """Each node's last heartbeat, as the manager has it."""
    shown = cluster.kube("nodes", "--json")
    assert shown.returncode == 0, shown.stderr
    return {node["name"]: node["last_heartbeat"] for node in json.loads(shown.stdout)}


def test_exec_carries_10_mb_both_ways_and_the_worker_keeps_its_heartbeats(
    cluster: Cluster, busybox_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    task = started(cluster, busybox_image, "on")
    assert cluster.kube("exec", task, "--", "true").returncode == 0
    leftovers = Leftovers(cluster, docker_client, task)
    big = tmp_path / "big"
    big.write_bytes(b"a" * 10_000_000)
    before = heartbeats(cluster)
    with big.open("rb") as source:
        catting = subprocess.Popen(
            [sys.executable, "-m", "kube", "exec", task, "--", "cat"],
            stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env,
        )  # fmt: skip
        try:
            # the worker's bus thread never waits on the command: heartbeats go on
            def beat() -> bool:
                now = heartbeats(cluster)
                return all(now.get(name) != at for name, at in before.items())

            wait_for(beat, what="a heartbeat of every node during the transfer", timeout=30)
            out, err = catting.communicate(timeout=180)
        finally:
            catting.kill()
            catting.wait()
    assert catting.returncode == 0, err
    assert len(out) == 10_000_000 and out == b"a" * 10_000_000
    with big.open("rb") as source:
        counted = subprocess.run(
            [sys.executable, "-m", "kube", "exec", task, "--", "wc", "-c"],
            stdin=source, capture_output=True, env=cluster.env, timeout=180,
        )  # fmt: skip
    assert (counted.returncode, counted.stdout.strip()) == (0, b"10000000"), counted.stderr
    leftovers.check()


def test_exec_carries_any_bytes_exactly_both_ways(cluster: Cluster, busybox_image: str) -> None:
    task = started(cluster, busybox_image, "on")
    data = os.urandom(1_000_000)
    done = subprocess.run(
        [sys.executable, "-m", "kube", "exec", task, "--", "cat"],
        input=data, capture_output=True, env=cluster.env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert hashlib.md5(done.stdout).hexdigest() == hashlib.md5(data).hexdigest()  # noqa: S324
    assert len(done.stdout) == len(data)
