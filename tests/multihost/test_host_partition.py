"""A host cut off the network for 30 s while its worker runs tasks, then healed (issue 13).

The manager runs here; one worker on a host of its own is cut off (its link down), and a
worker on a second host takes its tasks over. The scenario and its numbers are
tests/support/partitioned.py (tests/e2e/test_partitions.py runs the same on one host,
through a relay).
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.settings import Settings
from tests.conftest import running_cluster
from tests.support.copies import Copies
from tests.support.hosts import Bed
from tests.support.partitioned import check, cut_for_30s

pytestmark = pytest.mark.multihost


def test_a_host_cut_off_for_30s_then_healed(
    bed: Bed,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> None:
    # given a manager here, and a worker on a host of its own
    cut_host, other_host = bed.add_hosts(2)
    on_hosts = {"KUBE_AMQP_URL": bed.url()}
    with running_cluster(
        bed.url("127.0.0.1"),
        tmp_path,
        docker_client,
        request,
        {"cut": ()},
        prefixes={"cut": cut_host.prefix(on_hosts)},
    ) as cluster:
        [cut_node] = cluster.nodes

        def start_other() -> str:
            node = cut_node.removesuffix("-cut") + "-other"
            cluster.nodes.append(node)
            cluster.start_worker(node, prefix=other_host.prefix(on_hosts))
            return node

        with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
            # when it runs 16 tasks and its host is cut off for 30 s, a worker on a second
            # host taking over
            outcome = cut_for_30s(
                client,
                busybox_image,
                cut_node,
                start_other=start_other,
                cut=cut_host.cut,
                heal=cut_host.heal,
                copies=Copies([cut_host.docker(), other_host.docker()]),
            )
    # then the numbers of issue 13 hold
    check(outcome)
