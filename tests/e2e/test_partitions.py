"""A worker cut off from the broker, then healed: what runs where, and when (issue 13).

The cut worker reaches the broker through a relay on a port of its own, and the test
drops that port's packets with nftables (tests/support/partition.py): its connection
goes silent as across a cut link. Every 100 ms the engine's live containers are sampled
(tests/support/copies.py), so a moment with two live copies of a task cannot go unseen.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from kube.client import Client
from shared.models import NodeStatus, TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster, unavailable
from tests.support.copies import Copies
from tests.support.partition import Partition, Relay, relayed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

STOP_AFTER = 5.0
# Exits at once on SIGTERM, so that a stop's grace period does not hide when it was sent.
POLITE = ("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done")


@pytest.fixture
def split(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, Relay, Partition]]:
    """A manager, no worker yet, and a relay to the broker that can be cut."""
    if shutil.which("nft") is None:
        unavailable("needs nftables (`nft`, as root) to cut a worker off")
    broker = urlsplit(vhost)
    target = (broker.hostname or "127.0.0.1", broker.port or 5672)
    with (
        relayed(target) as (relay, partition),
        running_cluster(vhost, tmp_path, docker_client, request, {}) as cluster,
    ):
        yield cluster, relay, partition


def start_worker(cluster: Cluster, suffix: str, url: str | None = None) -> str:
    """Start a worker (through `url` if given) and return its node name."""
    node = f"{cluster.workdir.name[-8:]}-{suffix}".lstrip("-_.")
    flags = ("--heartbeat-interval", "1", "--metrics-port", "0")
    global_flags = ("--amqp-url", url) if url else ()
    cluster.nodes.append(node)
    cluster.start(node, *global_flags, "worker", "--name", node, *flags)
    return node


def ready(client: Client, node: str) -> bool:
    return any(n.name == node and n.status == NodeStatus.READY for n in client.nodes())


def spec(image: str, name: str, command: tuple[str, ...], **fields: object) -> TaskSpec:
    return TaskSpec.model_validate(
        {"name": name, "image": image, "command": command, "pull_policy": "never", **fields}
    )


def running_on(client: Client, node: str, task_ids: list[str]) -> float | None:
    """The time at which all these tasks run on `node`, if they do now."""
    tasks = [client.get(i) for i in task_ids]
    done = all(t.node == node and t.state == TaskState.RUNNING for t in tasks)
    return time.monotonic() if done else None


def test_a_worker_cut_off_for_30s_then_healed(
    split: tuple[Cluster, Relay, Partition],
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    cluster, relay, partition = split
    copies = Copies([docker_client])
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        # given a worker reaching the broker through the relay, running 16 tasks: 4 that
        # ask to be stopped after 5 s cut off, 4 that keep running (and exit at once on
        # SIGTERM), and 8 that keep running, ignore SIGTERM (a 10 s grace each) and may
        # not restart
        cut_node = start_worker(cluster, "cut", relay.url(cluster.url))
        wait_for(lambda: ready(client, cut_node), what="the cut worker ready", timeout=60)
        stop_after = {"stop_after_seconds": STOP_AFTER}
        careful = [
            client.submit(spec(busybox_image, f"careful-{i}", POLITE, on_disconnect=stop_after))
            for i in range(4)
        ]
        polite = [client.submit(spec(busybox_image, f"polite-{i}", POLITE)) for i in range(4)]
        no_restarts = {"max_restarts": 0}  # a node loss must not count as one
        stubborn = [
            client.submit(
                spec(busybox_image, f"stubborn-{i}", ("sleep", "3600"), restart=no_restarts)
            )
            for i in range(8)
        ]
        everything = careful + polite + stubborn
        copies.watch(everything)
        for task_id in everything:
            client.wait(task_id, {TaskState.RUNNING}, timeout=60)
        # and a second worker, reached directly, to take them over
        other = start_worker(cluster, "other")
        wait_for(lambda: ready(client, other), what="the other worker ready", timeout=60)
        copies.start()
        try:
            # when the first worker is cut off for 30 s
            cut_at = time.monotonic()
            partition.cut()
            down = wait_for(
                lambda: not ready(client, cut_node) and time.monotonic(),
                what="the cut node down",
                timeout=30,
            )
            moved = wait_for(
                lambda: running_on(client, other, polite + stubborn),
                what="the tasks that keep running, running elsewhere too",
                timeout=30,
            )
            wait_for(
                lambda: running_on(client, other, careful),
                what="the careful tasks running elsewhere",
                timeout=40,
            )
            wait_for(lambda: time.monotonic() - cut_at >= 30, what="30 s of cut", timeout=40)
            doubled_in_cut = [i for i in polite + stubborn if copies.live_now()[i] == 2]
            # and then healed
            healed_at = time.monotonic()
            partition.heal()
            wait_for(
                lambda: all(copies.live_now()[i] == 1 for i in everything),
                what="one live copy of each task",
                timeout=60,
            )
            wait_for(lambda: ready(client, cut_node), what="the cut node back", timeout=60)
        finally:
            copies.stop()
        tasks = {i: client.inspect(i) for i in everything}
    stubborn_gone = [copies.last_seen(i, 1) or 0 for i in stubborn]
    print(  # shown when the test fails, and with -s
        f"cut: node down after {down - cut_at:.1f}s, tasks elsewhere after {moved - cut_at:.1f}s;"
        f" careful copies gone after"
        f" {[round((copies.last_seen(i, 1) or 0) - cut_at, 1) for i in careful]}s, replaced"
        f" after {[round((copies.first_seen(i, 2) or 0) - cut_at, 1) for i in careful]}s;"
        f" heal: polite fenced after"
        f" {[round((copies.last_seen(i, 1) or 0) - healed_at, 1) for i in polite]}s,"
        f" stubborn after {[round(g - healed_at, 1) for g in stubborn_gone]}s"
    )
    # then the node was down, and the tasks ran elsewhere, within 10 s of the cut
    assert down - cut_at < 10
    assert moved - cut_at < 10
    # and the careful tasks' copies on the cut node stopped within their 5 s (plus the
    # kill grace), and never ran alongside their replacements
    for task_id in careful:
        gone = copies.last_seen(task_id, 1)
        replaced = copies.first_seen(task_id, 2)
        assert gone is not None and replaced is not None
        assert gone - cut_at < STOP_AFTER + 2.5, f"{task_id} ran {gone - cut_at:.1f}s into the cut"
        assert replaced > gone
    assert copies.doubled(careful) == []
    # while the others ran twice during the cut, and their stale copies went within 10 s
    # of the heal, together: the stubborn ones' grace periods did not add up
    assert doubled_in_cut == polite + stubborn
    for task_id in polite:
        assert (copies.last_seen(task_id, 1) or 0) - healed_at < 10
    assert max(stubborn_gone) - healed_at < 10 + 5  # the 10 s grace, and finding the heal
    assert max(stubborn_gone) - min(stubborn_gone) < 3
    # and each task runs once, on the other node, its restart budget untouched
    for task, _ in tasks.values():
        assert (task.node, task.attempt, task.state) == (other, 2, TaskState.RUNNING)
        assert (task.restart_count, task.lost_count) == (0, 1)
    assert sum(copies.live_now().values()) == len(everything)
    # and the careful tasks' history says what their worker did while cut off
    for task_id in careful:
        _, events = tasks[task_id]
        stopped = [e for e in events if e.superseded]
        assert len(stopped) == 1, events
        assert (stopped[0].node, stopped[0].attempt) == (cut_node, 1)
        assert stopped[0].detail is not None
        assert stopped[0].detail.startswith(f"stopped by {cut_node} after 5.")
    assert not copies.errors
