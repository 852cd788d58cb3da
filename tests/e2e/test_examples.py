"""The worked examples in docs/examples, run as a user would against a real cluster.

The shell ones need Debian's amqp-tools and the Node.js one npm and the npm registry;
`.ci/run` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube.client import Client
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import ROOT, Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "docs" / "examples"


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: `apt-get install {package}` (.ci/run does)")


def run_example(cluster: Cluster, *argv: str, cwd: Path = EXAMPLES, **env: str) -> str:
    result = subprocess.run(
        argv,
        env={**os.environ, "KUBE_AMQP_URL": cluster.url, **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr + cluster.logs()
    return result.stdout


def state_of(cluster: Cluster, task_id: str) -> TaskState:
    with Client(Settings(amqp_url=cluster.url)) as client:
        return client.get(task_id).state


def test_shell_submit_runs_a_task_and_follows_it(cluster: Cluster, busybox_image: str) -> None:
    need("amqp-publish", "amqp-tools")
    task_id = f"sh-{uuid.uuid4().hex[:6]}"
    # when the shell example submits a task
    out = run_example(
        cluster,
        "bash",
        "submit.sh",
        busybox_image,
        "sleep",
        "300",
        TASK_ID=task_id,
        PULL_POLICY="never",
    )
    # then the manager's answer is printed, then the states up to running
    lines = out.splitlines()
    assert json.loads(lines[0]) == {
        "ok": True,
        "id": task_id,
        "error": None,
        "result": None,
        "next": None,
    }
    assert lines[-1] == f"{task_id} running"
    assert state_of(cluster, task_id) == TaskState.RUNNING


@pytest.fixture
def watcher(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    need("amqp-consume", "amqp-tools")
    out = tmp_path / "watch.out"
    with open(out, "wb") as sink, open(tmp_path / "watch.err", "wb") as err:
        proc = subprocess.Popen(
            ["bash", "watch.sh"],
            env={**os.environ, "KUBE_AMQP_URL": cluster.url},
            stdout=sink,
            stderr=err,  # amqp-consume names its queue there
            cwd=EXAMPLES,
            start_new_session=True,
        )
    try:
        yield proc, out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def events_bound(cluster: Cluster) -> bool:
    vhost = cluster.url.rsplit("/", 1)[1]
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_bindings", "-p", vhost, "source_name", "routing_key"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return any(line.split() == ["kube.events", "task.*"] for line in listing.splitlines())


def test_shell_watch_prints_each_state_change(
    cluster: Cluster,
    busybox_image: str,
    watcher: tuple[subprocess.Popen[bytes], Path],
) -> None:
    # given the watch example, once its queue is bound
    _, out = watcher
    wait_for(lambda: events_bound(cluster), timeout=30, what="watch.sh's binding")
    # when a task is run
    run = cluster.kube(
        "run", "--name", "watched", "--image", busybox_image, "--wait", "--", "sleep", "300"
    )
    assert run.returncode == 0, run.stderr
    task_id = run.stdout.split()[0]

    # then the watcher printed its records, pending to running, one a line
    def states() -> list[str]:
        records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        return [r["state"] for r in records if r["id"] == task_id]

    assert wait_for(lambda: states()[-1:] == ["running"] and states(), what="running") == [
        "pending",
        "scheduled",
        "running",
    ]


def test_node_example_submits_and_watches(
    cluster: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    need("npm", "npm")
    # given the example and its package.json, installed with npm in a scratch folder
    for name in ("package.json", "submit-and-watch.js"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent"],
        cwd=tmp_path,
        check=True,
        timeout=300,
    )
    task_id = f"js-{uuid.uuid4().hex[:6]}"
    # when it runs
    out = run_example(
        cluster,
        "node",
        "submit-and-watch.js",
        busybox_image,
        "sleep",
        "300",
        cwd=tmp_path,
        TASK_ID=task_id,
        PULL_POLICY="never",
    )
    # then it printed the answer and the state changes (events may come before the
    # answer: they travel on another queue), and the task runs
    answers = [line for line in out.splitlines() if line.startswith("{")]
    events = [line.split()[0] for line in out.splitlines() if line.startswith("task.")]
    assert [json.loads(line)["id"] for line in answers] == [task_id]
    assert events == [
        "task.pending",
        "task.scheduled",
        "task.running",
    ]
    assert state_of(cluster, task_id) == TaskState.RUNNING
