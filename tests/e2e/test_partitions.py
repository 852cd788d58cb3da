"""A worker cut off from the broker, then healed: what runs where, and when (issue 13).

The cut worker reaches the broker through a relay on a port of its own, and the test
drops that port's packets with nftables (tests/support/partition.py): its connection
goes silent as across a cut link. Every 100 ms the engine's live containers are sampled
(tests/support/copies.py), so a moment with two live copies of a task cannot go unseen.
"""

from __future__ import annotations

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
from tests.conftest import Cluster, running_cluster
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


def test_a_cut_off_worker_stops_what_asked_for_it_and_the_rest_is_fenced_after_the_heal(
    split: tuple[Cluster, Relay, Partition],
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    cluster, relay, partition = split
    copies = Copies([docker_client])
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        # given a worker reaching the broker through the relay, running two kinds of tasks
        cut_node = start_worker(cluster, "cut", relay.url(cluster.url))
        wait_for(lambda: ready(client, cut_node), what="the cut worker ready", timeout=60)
        careful = [
            client.submit(
                spec(
                    busybox_image,
                    f"careful-{i}",
                    POLITE,
                    on_disconnect={"stop_after_seconds": STOP_AFTER},
                )
            )
            for i in range(4)
        ]
        plain = [client.submit(spec(busybox_image, f"plain-{i}", POLITE)) for i in range(4)]
        copies.watch(careful + plain)
        for task_id in careful + plain:
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
                lambda: (
                    all(
                        (t := client.get(i)).node == other and t.state == TaskState.RUNNING
                        for i in plain
                    )
                    and time.monotonic()
                ),
                what="the plain tasks running elsewhere",
                timeout=30,
            )
            careful_moved = wait_for(
                lambda: (
                    all(
                        (t := client.get(i)).node == other and t.state == TaskState.RUNNING
                        for i in careful
                    )
                    and time.monotonic()
                ),
                what="the careful tasks running elsewhere",
                timeout=40,
            )
            careful_gone = [copies.last_seen(i, 1) for i in careful]
            wait_for(lambda: time.monotonic() - cut_at >= 30, what="30 s of cut", timeout=40)
            two_plain = [i for i in plain if copies.live_now()[i] == 2]
            healed_at = time.monotonic()
            partition.heal()
            fenced = wait_for(
                lambda: all(copies.live_now()[i] == 1 for i in plain) and time.monotonic(),
                what="the stale plain copies fenced",
                timeout=60,
            )
            wait_for(lambda: ready(client, cut_node), what="the cut node back", timeout=60)
        finally:
            copies.stop()
        _, events = client.inspect(careful[0])
    print(
        f"down {down - cut_at:.1f}s, plain moved {moved - cut_at:.1f}s,"
        f" careful moved {careful_moved - cut_at:.1f}s,"
        f" careful gone {[round((g or 0) - cut_at, 1) for g in careful_gone]},"
        f" fenced {fenced - healed_at:.1f}s after heal"
    )
    print("\n".join(f"{e.at} {e.state} {e.attempt} {e.node} {e.detail}" for e in events))
    assert down - cut_at < 10
    assert moved - cut_at < 10
    assert copies.doubled(careful) == []
    assert two_plain == plain
    assert fenced - healed_at < 10
    assert not copies.errors
