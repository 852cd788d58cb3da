"""Endpoints across machines: workers on hosts of their own find their address from their
route to the broker, and a fourth host reaches each task and service at what kube reports."""

from __future__ import annotations

import pytest

from kube.client import Client
from shared.models import PullPolicy, TaskSpec
from shared.settings import Settings
from shared.specs import PortMapping
from shared.states import TaskState
from tests.multihost.conftest import ClusterOn
from tests.support.hosts import Bed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.multihost

FIXED = 18080  # the service's fixed host port, on each host's own address


def web(answer: str) -> tuple[str, ...]:
    serve = f"mkdir -p /www && echo '{answer}' > /www/index.html && exec httpd -f -p 8080 -h /www"
    return ("sh", "-c", serve)


def test_endpoints_are_the_hosts_addresses_and_a_fourth_host_reaches_each(
    bed: Bed, cluster_on: ClusterOn, busybox_image: str
) -> None:
    # given a manager here, workers on two hosts (each with its own engine, no address
    # given: they find it) and a fourth host with nothing of kube on it
    first, second = bed.add_hosts(2)
    (outside,) = bed.add_hosts(1, engine=False)
    with (
        cluster_on([first, second]) as cluster,
        Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube,
    ):
        hosts = dict(zip(cluster.nodes, (first, second), strict=True))

        # then each node advertises its host's address, found from its route to the broker
        assert {n.name: n.address for n in kube.nodes()} == {
            name: host.address for name, host in hosts.items()
        }

        # when a task publishes a port the engine picks
        spec = TaskSpec(
            name="one",
            image=busybox_image,
            pull_policy=PullPolicy.NEVER,
            command=web("task"),
            ports=(8080,),
        )
        task = kube.wait(kube.submit(spec), {TaskState.RUNNING}, timeout=60)

        # then its endpoint is its host's address and that port, and the fourth host gets
        # the task's answer there
        assert task.node is not None
        (endpoint,) = task.endpoints
        assert endpoint == f"{hosts[task.node].address}:{task.host_ports['8080']}"
        body = wait_for(
            lambda: outside.fetch(f"http://{endpoint}/"), what=f"the task at {endpoint}"
        )
        assert body.strip() == "task"

        # when a service of two tasks asks for the same fixed host port
        service = spec.model_copy(
            update={
                "name": "svc",
                "command": web("service"),
                "ports": (PortMapping(container=8080, host=FIXED),),
                "replicas": 2,
            }
        )
        kube.submit(service)

        # then its tasks are on both hosts (one port, one task a node), its endpoints are
        # both hosts' addresses at that port, and the fourth host gets an answer at each
        expected = tuple(sorted(f"{host.address}:{FIXED}" for host in (first, second)))
        wait_for(lambda: kube.endpoints("svc").endpoints == expected, what=f"svc at {expected}")

        def answers() -> list[str] | None:
            got = [outside.fetch(f"http://{where}/") for where in expected]
            return [body.strip() for body in got if body is not None] if all(got) else None

        assert wait_for(answers, what="the service at each endpoint") == ["service", "service"]
