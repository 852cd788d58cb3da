"""Streaming sessions end to end (issue 16): a real broker, manager, workers and Docker.

Each test ends by counting what is left: the broker's queues and consumers as before, no
session on the manager, no reader thread on any worker (both from /metrics).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker
import pytest

from kube.client import Client
from kube.sessions import Received
from shared.models import TaskSpec
from shared.sessions import EndReason, Fd, LogsParams
from shared.settings import Settings
from shared.specs import RestartPolicy
from shared.states import TaskState
from tests.conftest import ROOT, Cluster, running_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TICKER = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done"
"""Prints a line on stdout and one on stderr every 100 ms."""

STARTUP = 2.0
"""Seconds a `kube` process may take to start (imports, connecting) on a loaded machine,
before the 1 s the first line may take."""


@dataclass
class Watched:
    """A cluster whose manager and workers serve /metrics."""

    cluster: Cluster
    ports: dict[str, int]

    def metric(self, process: str, name: str) -> float:
        url = f"http://127.0.0.1:{self.ports[process]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own
            text = response.read().decode()
        found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        assert found is not None, f"{name} not served by {process}"
        return float(found.group(1))


def broker_footprint(url: str) -> tuple[list[str], list[int]]:
    """The vhost's queues, and the consumers of each of its channels (a client's direct
    reply-to consumer is counted there: it has no queue)."""
    vhost = url.rsplit("/", 1)[1]

    def table(*args: str) -> list[list[str]]:
        out = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return [line.split("\t") for line in out.splitlines()[1:] if line.strip()]

    queues = sorted(row[0] for row in table("list_queues", "-p", vhost, "name"))
    channels = table("list_channels", "vhost", "consumer_count")
    return queues, sorted(int(row[1]) for row in channels if row[0] == vhost)


@pytest.fixture
def watched(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Watched]:
    ports = {"manager": free_port(), "node-1": free_port(), "node-2": free_port()}
    workers = {n: ("--metrics-port", str(ports[n])) for n in ("node-1", "node-2")}
    manager_args = ("--metrics-port", str(ports["manager"]))
    with running_cluster(vhost, tmp_path, docker_client, request, workers, manager_args) as cluster:
        by_name = {"manager": ports["manager"]}
        for node in cluster.nodes:
            by_name[node] = ports[node.split("-", 1)[1]]
        yield Watched(cluster, by_name)


def client_for(cluster: Cluster) -> Client:
    return Client(Settings(amqp_url=cluster.url, request_timeout=10))


def ticker(image: str, name: str = "ticker", replicas: int | None = None) -> TaskSpec:
    return TaskSpec(
        name=name,
        image=image,
        command=("sh", "-c", TICKER),
        pull_policy="never",
        replicas=replicas,
    )


def no_sessions(watched: Watched, timeout: float = 30, nodes: list[str] | None = None) -> None:
    """No session on the manager, no reader thread on any worker (of `nodes`)."""
    wait_for(
        lambda: watched.metric("manager", "kube_manager_stream_sessions") == 0,
        what="no session left on the manager",
        timeout=timeout,
    )
    for node in watched.cluster.nodes if nodes is None else nodes:
        wait_for(
            lambda node=node: watched.metric(node, "kube_worker_stream_readers") == 0,
            what=f"no reader thread left on {node}",
            timeout=timeout,
        )


def running_ticker(cluster: Cluster, image: str) -> str:
    """A ticker task, running; its id."""
    with client_for(cluster) as client:
        task_id = client.submit(ticker(image))
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    return task_id


def nothing_left(watched: Watched, baseline: tuple[list[str], list[int]]) -> None:
    """No session on the manager, no reader on a worker, the broker as before."""
    cluster = watched.cluster
    no_sessions(watched)
    seen: list[tuple[list[str], list[int]]] = []

    def as_before() -> bool:
        seen[:] = [broker_footprint(cluster.url)]
        return seen[0] == baseline

    try:
        wait_for(as_before, what="the broker's queues and consumers as before", timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen} != {baseline}") from None


def test_following_a_task_gets_its_lines_as_written_and_leaves_nothing_behind(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    # given a task that prints a line on stdout and one on stderr every 100 ms
    task_id = running_ticker(cluster, busybox_image)
    with client_for(cluster) as client:
        client.nodes()  # connected: its own channel is in the baseline
        baseline = broker_footprint(cluster.url)
        # when a client follows it
        got: list[Received] = []
        with client.sessions() as sessions:
            asked = time.monotonic()
            opened = sessions.open(task_id, logs=LogsParams(follow=True, tail=0))
            first: float | None = None
            stdout = []
            while len(stdout) < 20:
                for received in sessions.read(timeout=1.0):
                    got.append(received)
                    for chunk in received.frame.chunks:
                        first = first or time.monotonic()
                        if chunk.fd == Fd.STDOUT:
                            stdout.append(chunk.data)
                    assert received.frame.end is None, received.frame.end
                assert time.monotonic() - asked < 20, "too slow"
            assert watched.metric(opened.node, "kube_worker_stream_readers") == 1
            assert watched.metric("manager", "kube_manager_stream_sessions") == 1
        # then the lines come in order, stdout apart from stderr, each with its time,
        # the first within a second
        assert first is not None and first - asked < 1.0
        numbers = [int(line.split()[1]) for line in stdout]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        chunks = [c for r in got for c in r.frame.chunks]
        assert {c.fd for c in chunks} == {Fd.STDOUT, Fd.STDERR}
        assert all(c.data.startswith("err") for c in chunks if c.fd == Fd.STDERR)
        assert all(c.at is not None for c in chunks)
        seqs = [r.frame.seq for r in got]
        assert seqs == list(range(1, len(seqs) + 1))
        # and once it stopped following (the client still connected), nothing is left
        nothing_left(watched, baseline)


def test_a_stream_ends_with_the_task_and_a_killed_client_is_cleaned_up_by_its_lease(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    with client_for(cluster) as client:
        # given a task that prints three lines and exits
        spec = TaskSpec(
            name="short",
            image=busybox_image,
            command=("sh", "-c", "sleep 1; echo one; echo two; echo three; sleep 1"),
            pull_policy="never",
            restart={"policy": "never"},
        )
        task_id = client.submit(spec)
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        baseline = broker_footprint(cluster.url)
        # when it is followed to its end
        lines: list[str] = []
        with client.sessions() as sessions:
            sessions.open(task_id, logs=LogsParams(follow=True))
            end = None
            deadline = time.monotonic() + 30
            while end is None and time.monotonic() < deadline:
                for received in sessions.read(timeout=1.0):
                    lines += [c.data for c in received.frame.chunks]
                    end = end or received.frame.end
        # then the session ends with it, every line given
        assert end is not None and end.reason == EndReason.EXITED
        assert "".join(lines) == "one\ntwo\nthree\n"
        nothing_left(watched, baseline)
        # when a client opens a session and then goes silent (as one killed would)
        other = client_for(cluster)
        sessions = other.sessions()
        sessions.open(client.submit(ticker(busybox_image, "quiet")), logs=LogsParams(), lease=3)
        wait_for(lambda: watched.metric("manager", "kube_manager_stream_sessions") == 1)
        # then its lease runs out: the manager and the worker end the session
        try:
            no_sessions(watched, timeout=20)
        finally:
            other.close()


class Following:
    """`kube logs -f ...` running as a user runs it, its lines collected as they come."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kube", "logs", *args],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _collect(stream: IO[str] | None, lines: list[tuple[float, str]]) -> None:
        assert stream is not None
        for line in stream:
            lines.append((time.monotonic(), line.rstrip("\n")))

    def lines(self) -> list[str]:
        return [line for _, line in self.out]

    def errors(self) -> list[str]:
        return [line for _, line in self.err]

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(15)
        for thread in self._threads:
            thread.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def following(cluster: Cluster, *args: str) -> Iterator[Following]:
    follow = Following(cluster, *args)
    try:
        yield follow
    finally:
        follow.close()


def test_kube_logs_f_prints_each_line_as_written_and_ctrl_c_leaves_nothing(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    # given a task that prints a line on each stream every 100 ms
    running_ticker(cluster, busybox_image)
    baseline = broker_footprint(cluster.url)
    # when `kube logs -f` follows it by name, with --tail 0: from now on
    with following(cluster, "-f", "--tail", "0", "ticker") as follow:
        started = time.monotonic()
        wait_for(lambda: len(follow.lines()) >= 20, "20 lines on stdout", timeout=30)
        # then the first comes within a second, stdout and stderr each on its own
        assert follow.out[0][0] - started < 1.0 + STARTUP, follow.out[:3]
        assert all(line.startswith("out ") for line in follow.lines())
        wait_for(lambda: any(e.startswith("err ") for e in follow.errors()), "stderr lines")
        numbers = [int(line.split()[1]) for line in follow.lines()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        # when interrupted, then it exits 130 and leaves nothing behind
        assert follow.interrupt() == 130
    nothing_left(watched, baseline)


def test_kube_logs_f_of_a_service_follows_a_restarted_task_onto_its_new_attempt(
    watched: Watched, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    cluster = watched.cluster
    with client_for(cluster) as client:
        # given a service of three replicas that restart on failure
        spec = ticker(busybox_image, "svc", replicas=3).model_copy(
            update={"restart": RestartPolicy(backoff_seconds=0.2)}
        )
        client.submit(spec)
        tasks = wait_for(
            lambda: (
                (found := [t for t in client.list() if t.service == "svc"])
                and all(t.state == TaskState.RUNNING for t in found)
                and len(found) == 3
                and found
            ),
            "three running replicas",
            timeout=60,
        )
    baseline = broker_footprint(cluster.url)
    ids = sorted(t.id for t in tasks)
    with following(cluster, "-f", "svc") as follow:
        # then every task's lines come, each prefixed with its task
        def prefixes() -> set[str]:
            return {line.split(" | ")[0] for line in follow.lines()}

        wait_for(lambda: prefixes() == set(ids), "lines of the three tasks", timeout=30)
        # when one replica's container is killed, and the task restarts
        victim = tasks[0]
        name = f"kube.{victim.node}.{victim.id}.{victim.attempt}"
        docker_client.containers.get(name).kill()

        # then its new attempt's output is followed too: its count starts again at 0
        def restarted() -> bool:
            starts = [line for line in follow.lines() if line == f"{victim.id} | out 0"]
            return len(starts) >= 2

        wait_for(restarted, "the restarted attempt's first line", timeout=60)
        assert follow.interrupt() == 130
    nothing_left(watched, baseline)


def test_a_follow_says_which_node_is_down_and_goes_on_with_the_rest(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    node_1, node_2 = cluster.nodes
    with client_for(cluster) as client:
        # given a service with a task on each node
        client.submit(ticker(busybox_image, "pair", replicas=2))
        tasks = wait_for(
            lambda: (
                (found := [t for t in client.list() if t.service == "pair"])
                and {t.node for t in found if t.state == TaskState.RUNNING} == {node_1, node_2}
                and found
            ),
            "a running task on each node",
            timeout=60,
        )
        on_1 = next(t.id for t in tasks if t.node == node_1)
    with following(cluster, "-f", "pair") as follow:
        wait_for(lambda: len({line.split(" | ")[0] for line in follow.lines()}) == 2, "both tasks")
        # when node 2's worker dies
        cluster.kill(node_2)
        # then kube says node 2 is down, and node 1's lines keep coming, exit 0 never lost
        wait_for(
            lambda: f"kube: partial: {node_2} is down" in "\n".join(follow.errors()),
            f"the marker for {node_2}",
            timeout=30,
        )
        marked = len(follow.lines())
        wait_for(
            lambda: sum(1 for line in follow.lines()[marked:] if line.startswith(on_1)) >= 5,
            f"more lines of {on_1} after the marker",
        )
        assert follow.proc.poll() is None
        assert follow.interrupt() == 130
    assert not any("Traceback" in line for line in follow.errors())
    no_sessions(watched, nodes=[node_1])


def test_a_reader_that_does_not_read_holds_up_only_its_own_session(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    with client_for(cluster) as client:
        # given a task that writes as fast as it can, on the node of every task here
        spec = TaskSpec(
            name="flood",
            image=busybox_image,
            command=("sh", "-c", "while true; do echo 0123456789abcdef0123456789abcdef; done"),
            pull_policy="never",
        )
        flood = client.submit(spec)
        node = client.wait(flood, {TaskState.RUNNING}, timeout=60).node
        # when a client opens a session on it and renews it, but never reads
        with client_for(cluster) as idle, idle.sessions() as sessions:
            opened = sessions.open(flood, logs=LogsParams(follow=True), window=4)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                sessions.send(opened.session)  # renews, acknowledging nothing
                time.sleep(1)
            # then the worker's other work goes on: a new task starts there at once
            other = client.submit(ticker(busybox_image, "other"))
            started = time.monotonic()
            assert client.wait(other, {TaskState.RUNNING}, timeout=30).state == TaskState.RUNNING
            assert time.monotonic() - started < 10
            assert all(n.status.value == "ready" for n in client.nodes())
            # and the worker sent no more than the window: 4 frames (then it stopped reading)
            came = [r for r in sessions.read(timeout=2) if r.opened.session == opened.session]
            assert 1 <= len(came) <= 4, len(came)
            assert watched.metric(str(node), "kube_worker_stream_readers") == 1
    no_sessions(watched)


def test_a_follow_goes_on_across_a_manager_restart_without_losing_or_doubling_lines(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    running_ticker(cluster, busybox_image)
    with following(cluster, "-f", "--tail", "0", "ticker") as follow:
        wait_for(lambda: len(follow.lines()) >= 10, "10 lines")
        # when the manager is killed and started again
        cluster.kill("manager")
        cluster.start_manager()
        count = len(follow.lines())
        # then the follow goes on (its session opened again), each line once, in order
        wait_for(lambda: len(follow.lines()) >= count + 30, "30 more lines", timeout=60)
        numbers = [int(line.split()[1]) for line in follow.lines()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert follow.interrupt() == 130
    no_sessions(watched)


def test_kube_logs_f_prints_the_bytes_a_container_wrote_exactly(
    watched: Watched, busybox_image: str
) -> None:
    cluster = watched.cluster
    # given a task that writes bytes that are not UTF-8, on stdout and on stderr
    wrote = "printf 'ok\\377\\376bad\\n'; printf 'e\\377rr\\n' >&2; sleep 6"
    with client_for(cluster) as client:
        spec = TaskSpec(
            name="binary",
            image=busybox_image,
            command=("sh", "-c", wrote),
            pull_policy="never",
            restart={"policy": "never"},
        )
        task_id = client.submit(spec)
        client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    # when `kube logs -f` follows it to its end
    done = subprocess.run(
        [sys.executable, "-m", "kube", "logs", "-f", task_id],
        env=cluster.env, capture_output=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    # then it printed exactly those bytes, none replaced
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (b"ok\xff\xfebad\n", b"e\xffrr\n")
    no_sessions(watched)
