"""Addresses and endpoints end to end: a worker advertising 127.0.0.1 on the real broker
and the shared Docker engine; what kube reports as an endpoint answers there."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from kube.client import Client
from shared.models import TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import Cluster, running_cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SERVE = "mkdir -p /www && echo {answer} > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture
def one(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """A manager and one worker that advertises 127.0.0.1."""
    workers: dict[str, tuple[str, ...]] = {"node-1": ("--advertise-address", "127.0.0.1")}
    with running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster:
        yield cluster


def get(endpoint: str) -> str | None:
    """What the httpd at host:port answers, or None while nothing does."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/index.html", timeout=2) as response:
            return str(response.read().decode().strip())
    except (urllib.error.URLError, ConnectionError):
        return None


def run(cluster: Cluster, image: str, *args: str) -> str:
    done = cluster.kube("run", "--image", image, "--pull-policy", "never", *args)
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    return done.stdout


def test_run_wait_prints_the_endpoint_and_it_answers(one: Cluster, busybox_image: str) -> None:
    # given a worker advertising 127.0.0.1: kube nodes shows it
    nodes = one.kube("nodes")
    assert re.search(rf"{one.nodes[0]}\s+ready\s+127\.0\.0\.1\s", nodes.stdout), nodes.stdout

    # when a task publishing container port 80 is run with --wait
    out = run(
        one,
        busybox_image,
        "--name",
        "web",
        "-p",
        "80",
        "--wait",
        "--",
        "sh",
        "-c",
        SERVE.format(answer="hello-endpoint"),
    )

    # then the last line names where it answers, 127.0.0.1 and the engine's host port
    found = re.search(r"ports 80->(127\.0\.0\.1:\d+)$", out.strip().splitlines()[-1])
    assert found, out
    endpoint = found.group(1)
    assert wait_for(lambda: get(endpoint), f"httpd at {endpoint}") == "hello-endpoint"

    # and kube inspect --json and kube ps say the same
    task_id = out.splitlines()[0]
    record = json.loads(one.kube("inspect", task_id, "--json").stdout)
    assert record["endpoints"] == [endpoint]
    assert f"80->{endpoint}" in one.kube("ps").stdout

    # when it is stopped, then its ended record keeps no endpoints of the gone container
    assert one.kube("stop", task_id).returncode == 0

    def ended() -> dict[str, object] | None:
        found = json.loads(one.kube("inspect", task_id, "--json").stdout)
        return found if found["state"] == "completed" else None

    record = wait_for(ended, "the stopped task")
    assert (record["endpoints"], record["host_ports"]) == ([], {})
    assert endpoint not in one.kube("ps", "-a").stdout


def test_bad_ports_and_names_are_usage_errors_of_the_cli(one: Cluster) -> None:
    # a port out of range, and a name that cannot be one, are refused by the CLI (exit 2)
    cases = [
        (("run", "--name", "x", "--image", "b", "-p", "0"), "-p/--port: '0': port 0 is not"),
        (("endpoints", "bad name!"), "kube: not a service name, task id or task name: 'bad name!'"),
    ]
    for args, says in cases:
        done = one.kube(*args)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr


def test_a_services_endpoints_are_announced_as_it_scales(one: Cluster, busybox_image: str) -> None:
    with Client(Settings(amqp_url=one.url)) as client:
        # given a watcher of service.endpoints, attached before anything happens
        events = client.watch(["service.endpoints"], timeout=90)

        def next_endpoints() -> tuple[str, ...]:
            event = next(events)
            assert event.endpoints is not None and event.endpoints.name == "web"
            return event.endpoints.endpoints

        # when a service of one task publishing port 80 starts
        run(
            one,
            busybox_image,
            "--name",
            "web",
            "--replicas",
            "1",
            "-p",
            "80",
            "--",
            "sh",
            "-c",
            SERVE.format(answer="svc"),
        )

        # then its endpoint is announced, answers, and kube endpoints lists it
        first = next_endpoints()
        assert len(first) == 1 and first[0].startswith("127.0.0.1:")
        assert wait_for(lambda: get(first[0]), f"httpd at {first[0]}") == "svc"
        assert one.kube("endpoints", "web").stdout.split() == list(first)

        # when it scales up to two, both are announced; when back to one, one is
        assert one.kube("scale", "web", "2").returncode == 0
        both = next_endpoints()
        assert len(both) == 2 and set(first) < set(both)
        answers = wait_for(lambda: [get(e) for e in both] == ["svc", "svc"], "both tasks")
        assert answers
        assert one.kube("scale", "web", "1").returncode == 0
        left = next_endpoints()
        assert len(left) == 1 and set(left) < set(both)
        as_json = json.loads(one.kube("endpoints", "web", "--json").stdout)
        assert as_json["name"] == "web" and tuple(as_json["endpoints"]) == left


def test_a_second_task_for_a_taken_host_port_stays_pending_saying_why(
    one: Cluster, busybox_image: str
) -> None:
    # given a task on host port P of the only node, answering there
    port = free_port()
    out = run(
        one,
        busybox_image,
        "--name",
        "first",
        "-p",
        f"{port}:80",
        "--wait",
        "--",
        "sh",
        "-c",
        SERVE.format(answer="first"),
    )
    assert out.strip().endswith(f"ports 80->127.0.0.1:{port}"), out
    assert wait_for(lambda: get(f"127.0.0.1:{port}"), "the first task") == "first"

    # when a second task wants the same host port
    second = run(one, busybox_image, "--name", "second", "-p", f"{port}:80", "--", "sleep", "600")
    task_id = second.strip()

    # then it stays pending, and its reason names the port and the node that holds it
    def reason() -> str | None:
        record = json.loads(one.kube("inspect", task_id, "--json").stdout)
        return record["error"] if record["state"] == "pending" and record["error"] else None

    said = wait_for(reason, "the second task's reason", timeout=30)
    assert said == f"no node can take host port {port}: {one.nodes[0]} has host port {port} taken"
    unplaced = json.loads(one.kube("inspect", task_id, "--json").stdout)["unplaced"]
    assert unplaced["kind"] == "host_ports" and unplaced["nodes"][0]["ports"] == [port]
    assert get(f"127.0.0.1:{port}") == "first"  # the first still answers


@pytest.fixture
def twins(
    vhost: str,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """A manager and two workers on the one engine, both advertising 127.0.0.1 (kube up)."""
    here = ("--advertise-address", "127.0.0.1")
    workers: dict[str, tuple[str, ...]] = {"node-1": here, "node-2": here}
    with running_cluster(vhost, tmp_path, docker_client, request, workers) as cluster:
        yield cluster


def test_workers_on_one_address_share_its_host_ports_and_a_port_service_updates_stop_first(
    twins: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    port = free_port()
    with Client(Settings(amqp_url=twins.url)) as client:
        # given a service of two replicas on one fixed host port, on two workers of one host
        web = ("--name", "web", "--replicas", "2", "-p", f"{port}:80")
        run(twins, busybox_image, *web, "--", "sh", "-c", SERVE.format(answer="v1"))

        def tasks() -> list[TaskRecord]:
            return [t for t in client.list() if t.service == "web"]

        # then one runs and the other waits, saying the port is taken on both nodes
        def settled() -> list[TaskRecord] | None:
            now = tasks()
            states = sorted(t.state for t in now)
            pending = [t for t in now if t.state == TaskState.PENDING and t.error]
            return now if states == [TaskState.PENDING, TaskState.RUNNING] and pending else None

        now = wait_for(settled, "one replica running, one waiting", timeout=60)
        waiting = next(t for t in now if t.state == TaskState.PENDING)
        a, b = sorted(twins.nodes)
        assert waiting.error == (
            f"no node can take host port {port}: {a} has host port {port} taken,"
            f" {b} has host port {port} taken"
        )
        assert all(t.restart_count == 0 for t in now)  # nothing failed to bind

        # when the service gets a new spec, the update goes stop-first and finishes
        new_spec = tmp_path / "web-v2.json"
        new_spec.write_text(
            json.dumps(
                {
                    "image": busybox_image,
                    "command": ["sh", "-c", SERVE.format(answer="v2")],
                    "ports": [{"container": 80, "host": port}],
                    "pull_policy": "never",
                }
            )
        )
        update = twins.kube("update", "web", "-f", str(new_spec))
        assert update.returncode == 0, update.stdout + update.stderr + twins.logs()

        def rolled() -> bool:
            (service,) = [s for s in client.services() if s.name == "web"]
            return service.version == 2 and service.update_state.value == "idle"

        assert wait_for(rolled, "the update to finish", timeout=90)
        assert wait_for(lambda: get(f"127.0.0.1:{port}") == "v2" or None, "v2 answering")
        running = [t for t in tasks() if t.state == TaskState.RUNNING]
        assert [t.version for t in running] == [2]
        assert not [t for t in tasks() if t.state == TaskState.FAILED]
