"""A worker cut off from the broker for 30 s, then healed, on this host (issue 13).

The cut worker reaches the broker through a relay on a port of its own, and nftables
drops that port's packets (tests/support/partition.py): its connection goes silent as
across a cut link. The scenario and its numbers are tests/support/partitioned.py;
tests/multihost/test_host_partition.py runs the same with the worker on a host of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from kube.client import Client
from shared.settings import Settings
from tests.conftest import Cluster, running_cluster, unavailable
from tests.support.copies import Copies
from tests.support.partition import Partition, Relay, relayed
from tests.support.partitioned import check, cut_for_30s, ready
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


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
    cluster.nodes.append(node)  # its containers are removed at teardown
    cluster.start(node, *global_flags, "worker", "--name", node, *flags)
    return node


def test_a_worker_cut_off_for_30s_then_healed(
    split: tuple[Cluster, Relay, Partition],
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    cluster, relay, partition = split
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        # given a worker that reaches the broker through the relay
        cut_node = start_worker(cluster, "cut", relay.url(cluster.url))
        wait_for(lambda: ready(client, cut_node), what="the cut worker ready", timeout=60)
        # when it runs 16 tasks and is cut off for 30 s, another worker taking over
        outcome = cut_for_30s(
            client,
            busybox_image,
            cut_node,
            start_other=lambda: start_worker(cluster, "other"),
            cut=partition.cut,
            heal=partition.heal,
            copies=Copies([docker_client]),
        )
    # then the numbers of issue 13 hold
    check(outcome)
