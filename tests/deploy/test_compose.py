"""deploy/compose.yaml and deploy/Dockerfile, checked without pulling any image.

`docker compose config` validates the file as Compose itself reads it; the checks after
it tie the services to the least-privilege users of deploy/rabbitmq/. The broker,
Prometheus and Grafana images cannot be pulled here (no registry), so nothing is started;
tests/deploy/test_image.py builds and runs deploy/Dockerfile itself, on a local base.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kube.localbroker import BROKER_IMAGE
from tests.deploy.test_definitions import dev_passwords

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        pytest.fail("`docker compose` is missing: .ci/run installs the Compose v2 plugin")
    check = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    rendered = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(rendered.stdout))


def test_compose_runs_the_broker_the_manager_two_workers_and_monitoring(
    config: dict[str, Any],
) -> None:
    services = config["services"]
    assert set(services) == {"rabbitmq", "manager", "worker-1", "worker-2", "prometheus", "grafana"}
    assert services["rabbitmq"]["image"] == BROKER_IMAGE  # the image `kube up` starts too
    for name in ("manager", "worker-1", "worker-2"):
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


def test_each_component_logs_in_as_its_own_least_privilege_user(config: dict[str, Any]) -> None:
    passwords = dev_passwords()
    expected = {
        "manager": "kube-manager",
        "worker-1": "kube-worker-node-1",
        "worker-2": "kube-worker-node-2",
    }
    for service, user in expected.items():
        url = urlsplit(config["services"][service]["environment"]["KUBE_AMQP_URL"])
        assert (url.username, url.password, url.path) == (user, passwords[user], "/kube")
    for i in (1, 2):
        command = config["services"][f"worker-{i}"]["command"]
        assert command[command.index("--name") + 1] == f"node-{i}"


def test_only_the_workers_run_as_root_for_the_docker_socket(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("worker-1", "worker-2"):
        assert services[name]["user"] == "0:0"
        assert "/var/run/docker.sock" in [v["target"] for v in services[name]["volumes"]]
    assert "user" not in services["manager"]  # the image's own: kube, uid 10001
    assert not any("docker.sock" in v["source"] for v in services["manager"]["volumes"])


def test_the_broker_loads_kubes_plugins_and_definitions(config: dict[str, Any]) -> None:
    mounts = {
        v["target"]: Path(v["source"])
        for v in config["services"]["rabbitmq"]["volumes"]
        if v["type"] == "bind"
    }
    for target in ("/etc/rabbitmq/enabled_plugins", "/etc/rabbitmq/definitions.json"):
        assert mounts[target].is_file(), target
    plugins = mounts["/etc/rabbitmq/enabled_plugins"].read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    conf = mounts["/etc/rabbitmq/conf.d/20-kube.conf"].read_text()
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf


def test_the_dockerfile_is_multi_stage_and_not_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    # test_image.py builds on a local stand-in; what everyone else gets is the official one
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.MULTILINE)
    assert "COPY --from=build" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["kube"\]', text, re.MULTILINE)
