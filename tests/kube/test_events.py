"""`kube events` against a real cluster: the snapshot, the live feed, --task, --json."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from kube.client import Event
from kube.events import event_line, task_line
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.states import TaskState
from tests.conftest import ROOT, Cluster
from tests.support.broker import stream_readers, watch_queues
from tests.support.waiting import wait_for

NOW = datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)


def record(state: TaskState, **fields: object) -> TaskRecord:
    spec = TaskSpec(name="web", image="busybox")
    base = {"id": "web-1a2b", "name": "web", "image": "busybox", "spec": spec}
    return TaskRecord.model_validate(
        {**base, "state": state, "created_at": NOW, "updated_at": NOW, **fields}
    )


def clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


# -- lines --------------------------------------------------------------------------------


def test_a_running_task_reads_as_one_line() -> None:
    task = record(TaskState.RUNNING, node="node-1", attempt=1, host_ports={"8080": 32768})
    assert task_line(task) == f"{clock(NOW)} task web-1a2b running on node-1 ports 8080->32768"


def test_a_failed_restarting_and_unplaceable_task_say_why() -> None:
    failed = record(TaskState.FAILED, node="n1", exit_code=3, error="exited with code 3")
    assert task_line(failed).endswith("task web-1a2b failed on n1 (exit 3): exited with code 3")
    later = NOW + timedelta(seconds=4)
    restarting = record(TaskState.PENDING, restart_count=1, not_before=later, error="boom")
    assert task_line(restarting).endswith(f"pending (restart 1, not before {clock(later)}): boom")
    waiting = record(TaskState.PENDING, error="no worker has joined yet")
    assert task_line(waiting).endswith("task web-1a2b pending: no worker has joined yet")


def test_a_removed_task_reads_as_removed_not_as_its_last_state() -> None:
    removed = Event("task.removed", task=record(TaskState.COMPLETED))
    assert event_line(removed, NOW) == f"{clock(NOW)} task web-1a2b removed"


def test_node_events_read_as_lines_and_heartbeats_are_left_out() -> None:
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=2, memory=2 * 1024**3, disk=0, last_heartbeat=NOW
    )
    assert (
        event_line(Event("node.ready", node=node))
        == f"{clock(NOW)} node n1 ready (2 cpus, 2Gi memory)"
    )
    assert event_line(Event("node.down", node=node), NOW) == f"{clock(NOW)} node n1 down"
    assert event_line(Event("node.heartbeat", node=node)) is None


# -- for real -------------------------------------------------------------------------------


class Feed:
    """A `kube events` process whose output lines are collected as they come."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kube", "events", *args],
            env=cluster.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, *parts: str) -> str | None:
        return next((line for line in self.lines if all(p in line for p in parts)), None)


@contextmanager
def feed(cluster: Cluster, *args: str) -> Iterator[Feed]:
    running = Feed(cluster, *args)
    try:
        yield running
    finally:
        running.proc.terminate()
        running.proc.wait(10)


def run(cluster: Cluster, image: str, name: str, *command: str) -> str:
    result = cluster.kube(
        "run",
        "--name",
        name,
        "--image",
        image,
        "--pull-policy",
        "never",
        "--port",
        "8080",
        "--",
        *command,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.e2e
def test_follow_prints_each_change_and_leaves_nothing_behind(
    cluster: Cluster, busybox_image: str
) -> None:
    # given: a feed following everything, reading the events stream (no queue of its own)
    with feed(cluster, "--follow") as live:
        wait_for(lambda: stream_readers(cluster.url), timeout=20, what="the feed's reader")
        assert not watch_queues(cluster.url)
        # when: a task runs for a moment and exits
        task_id = run(cluster, busybox_image, "blink", "sleep", "1")
        # then: each of its changes is a line, in order, with where it ran and on which port
        wait_for(lambda: live.saw(task_id, "completed"), timeout=30, what="the completion")
        mine = [line for line in live.lines if task_id in line]
        states = [line.split()[3] for line in mine]
        assert states == ["pending", "scheduled", "running", "completed"], mine
        assert " ports 8080->" in mine[2] and " on t" in mine[2]
        assert mine[3].endswith("(exit 0)")
        assert live.proc.poll() is None  # still following
    # and it made nothing that could outlive it: a stream reader declares no queue (the
    # broker's count of stream readers is no check: 3.10 keeps a killed reader's count)
    assert not watch_queues(cluster.url)


@pytest.mark.e2e
def test_task_follow_filters_and_ends_with_the_task(cluster: Cluster, busybox_image: str) -> None:
    other = run(cluster, busybox_image, "other", "sleep", "1")
    mine = run(cluster, busybox_image, "mine", "sleep", "2")
    with feed(cluster, "--follow", "--task", mine, "--json") as live:
        live.proc.wait(30)  # exits by itself once the task ended
        events = [json.loads(line) for line in live.lines]
    assert events and all(e["task"]["id"] == mine for e in events)
    assert events[-1]["key"] == "task.completed"
    assert other not in "\n".join(live.lines)


@pytest.mark.e2e
def test_without_follow_it_prints_the_leader_nodes_and_tasks_and_exits(
    cluster: Cluster, busybox_image: str
) -> None:
    task_id = run(cluster, busybox_image, "snap", "sleep", "30")
    wait_for(lambda: "running" in cluster.kube("ps").stdout, timeout=30, what="the task running")
    result = cluster.kube("events")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert " leads (epoch " in lines[0]  # the leading manager first
    assert [line.split()[3] for line in lines[1:3]] == ["ready", "ready"]
    assert f"task {task_id} running on" in lines[-1]
    assert not watch_queues(cluster.url)  # a snapshot binds no queue
