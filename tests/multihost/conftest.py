"""The multihost test bed: each test gets a Bed, to which it adds the hosts it needs.

Tests that use `bed` are marked `multihost` (and `broker` and `docker`, through the vhost
and the image). They need root, the broker and the machine's engine (for the image).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import docker
import pytest

from tests.conftest import Cluster, running_cluster, unavailable
from tests.support.hosts import Bed, Host, missing_tools, running_bed
from tests.support.reports import call_failed


@pytest.fixture(autouse=True)
def bed_tools() -> None:
    """Skip (fail in CI) where hosts cannot be made."""
    if missing := missing_tools():
        unavailable(f"multihost tests need {', '.join(missing)}")


@pytest.fixture
def bed(vhost: str, busybox_image: str, request: pytest.FixtureRequest) -> Iterator[Bed]:
    """A test bed whose hosts' engines get the busybox image; removed after the test, and
    its hosts' logs printed first if the test failed."""
    with running_bed(vhost, busybox_image) as made:
        yield made
        if call_failed(request):
            print(made.logs())


ClusterOn = Callable[[Sequence[Host]], AbstractContextManager[Cluster]]


@pytest.fixture
def cluster_on(
    bed: Bed,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> ClusterOn:
    """`with cluster_on(hosts) as cluster`: a manager here and a worker on each host
    (nodes `<prefix>-a`, `-b`, ... in the hosts' order), reaching the broker at the bed's
    bridge address; stopped after, their containers removed."""

    @contextlib.contextmanager
    def on(hosts: Sequence[Host]) -> Iterator[Cluster]:
        env = {"KUBE_AMQP_URL": bed.url()}
        suffixes = [chr(ord("a") + i) for i in range(len(hosts))]
        prefixes = {suffix: host.prefix(env) for suffix, host in zip(suffixes, hosts, strict=True)}
        workers: dict[str, tuple[str, ...]] = {suffix: () for suffix in suffixes}
        url = bed.url("127.0.0.1")
        with running_cluster(
            url, tmp_path, docker_client, request, workers, prefixes=prefixes
        ) as cluster:
            yield cluster

    return on
