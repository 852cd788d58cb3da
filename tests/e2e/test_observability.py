"""Observability, proven: a real Prometheus scrapes a real manager and workers while tasks
run, and every PromQL expression of the Grafana dashboard and the alert rules is checked
against it. Also: the endpoints' names pass `promtool check metrics`, a restarted manager
reports the truth, and a taken port is a clear error.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from kube.client import Client, make_spec
from shared.rpc import RpcChannel
from shared.settings import Settings
from tests.conftest import ROOT, Cluster, remove_node_containers
from tests.support.ports import free_port
from tests.support.prometheus import (
    CONFIG,
    DASHBOARD,
    DEPLOY,
    RULES,
    Prometheus,
    alert_rules,
    config_for,
    dashboard_queries,
    ensure_rabbitmq_exporter,
    metric_names,
    require,
)
from tests.support.waiting import wait_for

# The alerts whose conditions the scenario below brings about; every other alert must stay
# quiet while it runs (and KubeManagerDown fires once the manager is stopped, at the end).
FIRING = {
    "KubeNodeDown",
    "KubeWorkerNotScraped",
    "KubeTasksFailing",
    "KubeTasksRestartLoop",
    "KubeDeadLettersGrowing",
}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def sample(text: str, series: str) -> float | None:
    """The value of one exposed series, e.g. `kube_tasks{state="running"}`."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


# -- the files, statically ------------------------------------------------------------------


def test_promtool_accepts_the_rules_and_the_config() -> None:
    promtool = require("promtool")
    for check in (["check", "rules", str(RULES)], ["check", "config", str(CONFIG)]):
        result = subprocess.run([promtool, *check], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_its_datasource() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert used == uids == {"prometheus"}
    providers = yaml.safe_load((provisioning / "dashboards" / "kube.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
    titles = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert titles == {"Cluster", "Latency", "Nodes", "Workers", "Messaging"}


# -- against a real Prometheus ----------------------------------------------------------------


@pytest.fixture
def observed(
    vhost: str, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> Iterator[tuple[Cluster, Prometheus, dict[str, int]]]:
    """A manager and two workers serving /metrics, and a Prometheus scraping them."""
    ensure_rabbitmq_exporter()
    prefix = f"o{uuid.uuid4().hex[:6]}"
    cluster = Cluster(vhost, tmp_path, [f"{prefix}-node-1", f"{prefix}-node-2"])
    ports = {"manager": free_port(), **{node: free_port() for node in cluster.nodes}}
    prometheus: Prometheus | None = None
    try:
        cluster.start(
            "manager",
            "manager",
            "--db",
            str(tmp_path / "manager.db"),
            "--heartbeat-interval",
            "1",
            "--node-down-after",
            "4",
            "--metrics-port",
            str(ports["manager"]),
        )
        for node in cluster.nodes:
            cluster.start_worker(node, "--metrics-port", str(ports[node]))
        config = config_for(
            f"127.0.0.1:{ports['manager']}",
            [f"127.0.0.1:{ports[node]}" for node in cluster.nodes],
            vhost.rsplit("/", 1)[1],
        )
        prometheus = Prometheus(config, tmp_path)
        yield cluster, prometheus, ports
    finally:
        if prometheus is not None:
            prometheus.stop()
        for name in list(cluster.procs):
            cluster.stop(name)
        for node in cluster.nodes:
            remove_node_containers(docker_client, node)


@pytest.mark.e2e
def test_every_dashboard_and_alert_expression_works_against_real_series(
    observed: tuple[Cluster, Prometheus, dict[str, int]], busybox_image: str
) -> None:
    cluster, prometheus, ports = observed
    wanted = {"kube-manager": 1, "kube-worker": 2, "rabbitmq": 1, "rabbitmq-queues": 1}
    wait_for(lambda: prometheus.targets_up() == wanted, timeout=60, what="every target up")

    # given: what the panels and alerts are about happens, while Prometheus scrapes
    settings = Settings(amqp_url=cluster.url, request_timeout=10)
    image = {"image": busybox_image, "pull_policy": "never"}
    with Client(settings) as kube:
        kube.submit(make_spec({**image, "name": "done", "command": ["true"]}))
        kube.submit(
            make_spec(
                {
                    **image,
                    "name": "serves",
                    "command": ["httpd", "-f", "-p", "8080"],
                    "ports": [8080],
                    "health_check": {"tcp": {"port": 8080}, "interval_seconds": 0.5},
                }
            )
        )
        kube.submit(
            make_spec(
                {
                    **image,
                    "name": "crashes",
                    "command": ["sh", "-c", "exit 3"],
                    "restart": {"max_restarts": 6, "backoff_seconds": 0},
                }
            )
        )
        kube.submit(make_spec({**image, "name": "too-big", "cpu": 1000}))
        absent = {**image, "image": "localhost/kube-absent:latest", "restart": {"policy": "never"}}
        kube.submit(make_spec({**absent, "name": "no-image"}))

    def seen(expr: str) -> bool:
        return bool(prometheus.query(expr))

    # A growth is seen only from a sample before it: both counts of dead letters at 0 first
    # (RabbitMQ publishes a new queue's stats some seconds after it is declared).
    for before in (
        'kube_messages_dead_lettered_total{queue="kube.manager.commands"} == 0',
        'rabbitmq_detailed_queue_messages{queue="kube.dead-letters"} == 0',
    ):
        wait_for(lambda before=before: seen(before), timeout=60, what=before)
    with RpcChannel(settings) as rpc:
        rpc.publish("kube.commands", "task.submit", b"this is not a task spec")

    for expr in (
        'kube_tasks{state="failed"} >= 2',  # crashes (after its restarts) and no-image
        'kube_tasks{state="completed"} >= 1',
        'kube_tasks{state="running"} >= 1',
        'sum(kube_worker_health_checks_total{result="pass"}) > 0',
        "kube_messages_dead_lettered_total > 0",
        'sum(kube_worker_runtime_operation_duration_seconds_count{outcome="image_not_found"}) > 0',
    ):
        wait_for(lambda expr=expr: seen(expr), timeout=90, what=expr)

    # the names on both endpoints follow Prometheus's conventions
    promtool = require("promtool")
    for port in (ports["manager"], ports[cluster.nodes[0]]):
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=scrape(port), capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # when: a worker goes away
    lost = cluster.nodes[1]
    cluster.stop(lost)
    wait_for(lambda: seen(f'kube_node_ready{{node="{lost}"}} == 0'), timeout=60, what="node down")
    wait_for(lambda: seen('up{job="kube-worker"} == 0'), timeout=30, what="worker unscraped")

    # then: every dashboard query is valid and has data, and so does every series it reads
    for panel, expr in dashboard_queries().items():
        assert prometheus.query(expr), f"dashboard panel {panel}: no data for {expr}"
    rules = alert_rules()
    for expr in [*dashboard_queries().values(), *rules.values()]:
        for name in metric_names(expr):
            assert prometheus.query(f"count({name})"), f"no series {name} (in {expr})"
    # every alert is valid; those whose conditions occurred fire, the others stay quiet
    for alert, expr in rules.items():
        result = prometheus.query(expr)
        assert bool(result) == (alert in FIRING), f"{alert}: {expr} -> {result}"
        if alert in FIRING:  # each way it can fire, on its own (kube's counters and the broker's)
            for branch in expr.split(" or "):
                assert prometheus.query(branch), f"{alert}: no data for {branch}"
    groups = prometheus.api("rules")["data"]["groups"]
    assert {rule["health"] for group in groups for rule in group["rules"]} == {"ok"}

    # when: the manager stops, the alert for that fires
    assert not prometheus.query(rules["KubeManagerDown"])
    cluster.stop("manager")
    wait_for(lambda: seen(rules["KubeManagerDown"]), timeout=30, what="KubeManagerDown")


# -- restarts and ports ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_restarted_manager_reports_the_true_tasks_by_state(
    cluster: Cluster, busybox_image: str
) -> None:
    # given: a running task and a failed one
    image = ["--image", busybox_image, "--pull-policy", "never"]
    running = cluster.kube("run", "--name", "up", *image, "--wait", "--", "sleep", "300")
    assert running.returncode == 0, running.stderr
    spec = {
        "name": "down",
        "image": busybox_image,
        "pull_policy": "never",
        "command": ["sh", "-c", "exit 1"],
        "restart": {"policy": "never"},
    }
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as kube:
        kube.submit(make_spec(spec))
        wait_for(
            lambda: [t for t in kube.list() if t.state.value == "failed"],
            timeout=60,
            what="the failed task",
        )
    # when: the manager is killed and started again from its database, with metrics on
    manager = cluster.procs.pop("manager")
    manager.send_signal(signal.SIGKILL)
    manager.wait(10)
    port = free_port()
    cluster.start(
        "manager",
        "manager",
        "--db",
        str(cluster.workdir / "manager.db"),
        "--heartbeat-interval",
        "1",
        "--metrics-port",
        str(port),
    )
    # then: its first scrape already counts every task by its state
    text = wait_for(lambda: scrape(port), timeout=30, what="the manager's /metrics")
    assert sample(text, 'kube_tasks{state="running"}') == 1
    assert sample(text, 'kube_tasks{state="failed"}') == 1
    assert sample(text, 'kube_tasks{state="pending"}') == 0
    assert sample(text, 'kube_nodes{status="ready"}') == 2


@pytest.mark.parametrize("component", ["manager", "worker"])
def test_a_taken_metrics_port_is_a_clear_error(component: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        extra = (
            ["--db", str(tmp_path / "m.db")] if component == "manager" else ["--runtime", "mock"]
        )
        result = subprocess.run(
            [sys.executable, "-m", "kube", component, *extra, "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "KUBE_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"},
        )
    assert result.returncode == 1
    assert f"kube: cannot serve metrics on port {port}: it is already in use" in result.stderr
    assert "Traceback" not in result.stderr
