"""A real Prometheus for tests: started on a free port with a given config, queried over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "kube.json"
RABBITMQ_METRICS = "127.0.0.1:15692"

# What Grafana substitutes before a dashboard query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$node": ".*"}

METRIC_NAME = re.compile(r"\b((?:kube|rabbitmq)_[a-z0-9_]+)\b")


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: install Debian's prometheus package (bash .ci/run)")
    return path


def ensure_rabbitmq_exporter() -> None:
    """Enable RabbitMQ's rabbitmq_prometheus plugin (port 15692) unless it answers already."""
    if _answers(f"http://{RABBITMQ_METRICS}/metrics"):
        return
    subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_prometheus"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_for(lambda: _answers(f"http://{RABBITMQ_METRICS}/metrics"), what="rabbitmq_prometheus")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def dashboard_queries() -> dict[str, str]:
    """Every PromQL expression of the Grafana dashboard, by `panel title/refId`."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries[f"{panel['title']}/{target['refId']}"] = expr
    return queries


def alert_rules() -> dict[str, str]:
    """Every alert's expression, by alert name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def metric_names(expr: str) -> set[str]:
    """The kube_ and rabbitmq_ series an expression reads."""
    return set(METRIC_NAME.findall(expr))


def config_for(
    manager: str, workers: list[str], vhost_name: str, rules: Path = RULES
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with these targets, a 1 s interval and absolute rules."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    targets = {
        "kube-manager": [manager],
        "kube-worker": workers,
        "rabbitmq": [RABBITMQ_METRICS],
        "rabbitmq-queues": [RABBITMQ_METRICS],
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        if job["job_name"] == "rabbitmq-queues":
            job["params"]["vhost"] = [vhost_name]  # this test's queues, not every test's
    return config


class Prometheus:
    """A prometheus process with its own data directory; stop() ends it."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                require("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self._ready(), timeout=60, what="Prometheus ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return _answers(f"http://127.0.0.1:{self.port}/-/ready")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns the whole answer (status, data or error)."""
        query = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with its error
            return json.load(exc)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant result of expr now; fails the test on an invalid expression."""
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return list(answer["data"]["result"])

    def targets_up(self) -> dict[str, int]:
        """How many targets of each job answered their last scrape."""
        up: dict[str, int] = {}
        for target in self.api("targets")["data"]["activeTargets"]:
            job = target["labels"]["job"]
            up[job] = up.get(job, 0) + (target["health"] == "up")
        return up

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()
