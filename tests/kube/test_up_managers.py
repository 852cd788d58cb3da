"""`kube up --managers N`: a leader and standbys on one PostgreSQL store, through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from kube.client import Client
from kube.up import UpOptions, managers_problem, plan
from shared.models import TaskSpec
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import ROOT
from tests.kube.test_up import kill_tree, kube_up
from tests.support.stores import Stores
from tests.support.waiting import wait_for

# -- pure ------------------------------------------------------------------------------


def test_several_managers_are_named_and_come_first() -> None:
    options = UpOptions(managers=3, workers=1, store="postgresql://kube@db/kube")
    children = plan(options, Path("/tmp/x.db"))
    assert [c.name for c in children] == ["manager-1", "manager-2", "manager-3", "node-1"]
    second = children[1].argv
    assert second[second.index("--name") + 1] == "manager-2"
    assert second[second.index("--store") + 1] == "postgresql://kube@db/kube"


def test_one_manager_keeps_its_name_and_no_name_flag() -> None:
    (manager, _) = plan(UpOptions(workers=1), Path("/tmp/x.db"))
    assert manager.name == "manager" and "--name" not in manager.argv


@pytest.mark.parametrize(
    ("managers", "store", "problem"),
    [
        (1, None, None),
        (2, "postgresql://kube@db/kube", None),
        (2, None, "--managers 2 needs a PostgreSQL store"),
        (3, "sqlite:////tmp/m.db", "--managers 3 needs a PostgreSQL store"),
        (0, None, "--managers must be 1 or more, not 0"),
    ],
)
def test_standbys_need_a_shared_store(managers: int, store: str | None, problem: str) -> None:
    said = managers_problem(managers, store)
    assert (said is None) if problem is None else (said is not None and problem in said)


def test_the_cli_refuses_two_managers_on_sqlite_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kube", "up", "--managers", "2", "--runtime", "mock"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--managers 2 needs a PostgreSQL store" in done.stderr
    assert "Traceback" not in done.stderr


# -- for real --------------------------------------------------------------------------


@pytest.mark.postgres
def test_up_with_two_managers_fails_over_to_the_standby(
    vhost: str, tmp_path: Path, postgres_database: str
) -> None:
    # given kube up with two managers on a store of this test's own, one mock worker
    store = Stores("postgresql", postgres_database, tmp_path).new()
    log = tmp_path / "up.log"
    prefix = f"upha{uuid.uuid4().hex[:6]}"
    args = ["--managers", "2", "--store", store, "--workers", "1", "--runtime", "mock"]
    up = kube_up(vhost, *args, "--name-prefix", prefix, log=log)
    env = {**os.environ, "KUBE_AMQP_URL": vhost, "PYTHONPATH": str(ROOT)}

    def managers() -> dict[str, str]:
        shown = subprocess.run(
            [sys.executable, "-m", "kube", "managers", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        if shown.returncode != 0:
            return {}
        return {m["name"]: m["role"] for m in json.loads(shown.stdout) if m["seen_ago"] < 3}

    try:
        # then `kube managers` shows one leader and one standby, and kube up says who leads
        wait_for(
            lambda: sorted(managers().values()) == ["leader", "standby"],
            timeout=90,
            what="a leader and a standby",
        )
        roles = managers()
        (first,) = [name for name, role in roles.items() if role == "leader"]
        wait_for(lambda: f"{first} leads" in log.read_text(), what="kube up to name the leader")
        # when the leader's process is killed
        pid = next(
            p.pid
            for p in psutil.Process(up.pid).children(recursive=True)
            if "manager" in p.cmdline() and first in p.cmdline()
        )
        os.kill(pid, signal.SIGKILL)
        # then the other leads, kube up says so and carries on, and a task still runs
        (other,) = set(roles) - {first}
        wait_for(lambda: managers().get(other) == "leader", timeout=60, what=f"{other} to lead")
        wait_for(lambda: f"{other} leads" in log.read_text(), what="kube up to name it")
        with Client(Settings(amqp_url=vhost, request_timeout=30)) as client:
            task_id = client.submit(TaskSpec(name="after", image="busybox"))
            assert client.wait(task_id, {TaskState.RUNNING}, timeout=60).attempt == 1
        assert up.poll() is None, log.read_text()
        # and on SIGTERM it stops the rest, cleanly
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, log.read_text()
        assert f"{first} exited" in log.read_text()
    finally:
        kill_tree(up)
