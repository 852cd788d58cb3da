"""The README's quick start, run as written: a fresh virtual environment with the checkout
`pip install`ed into it (pip's own cache keeps it quick), `kube up` in the background,
the offline `kube run` and `kube logs`, and the "Next" service; the output must be what
the README shows.

Two things differ from a person's terminal, neither in the commands: the cluster runs on
a vhost of its own (KUBE_AMQP_URL), and `kube up`'s state and temporary folder go to this
test's folder (XDG_STATE_HOME, TMPDIR), removed with it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.conftest import ROOT
from tests.support.docblocks import block, commands
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

EXAMPLE_ID = "hello-1a2b3c4d"  # the id the README's output shows
EXAMPLE_URL = "amqp://guest:***@localhost:5672/%2F"


@dataclass
class Shell:
    """Commands run as a person would in the checkout's copy, one line at a time."""

    cwd: Path
    env: dict[str, str]

    def run(self, line: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        # each line in a shell of its own, as in a terminal where `. .venv/bin/activate` ran
        activated = f". .venv/bin/activate && {line}" if (self.cwd / ".venv").exists() else line
        return subprocess.run(
            ["bash", "-c", activated],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, line: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = self.run(line, timeout)
        assert done.returncode == 0, f"$ {line}\n{done.stdout}{done.stderr}"
        return done


def without_this_venv(path: str) -> str:
    """PATH without the test's own virtual environment: a fresh machine has none."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if not p.startswith(sys.prefix))


@pytest.fixture
def shell(vhost: str, tmp_path: Path) -> Shell:
    """A copy of the checkout (tracked and new files, as `git status` sees them) and a
    clean environment pointed at a fresh vhost."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "kube"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not key.startswith("KUBE_")
    }
    (tmp_path / "tmp").mkdir()
    env |= {
        "PATH": without_this_venv(env.get("PATH", "/usr/bin:/bin")),
        "KUBE_AMQP_URL": vhost,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path / "tmp"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return Shell(copy, env)


@pytest.fixture
def kube_up(shell: Shell, tmp_path: Path) -> Iterator[Path]:
    """The quick start's `kube up` in the background, after its install block; yields its
    log. Stopped with Ctrl-C (SIGINT) at the end; killed, with its containers, if that
    fails."""
    for line in commands(block("README.md", "quick-start: install")):
        shell.ok(line)
    (line,) = commands(block("README.md", "quick-start: up"))
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            ["bash", "-c", f". .venv/bin/activate && exec {line}"],
            cwd=shell.cwd,
            env=shell.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, log.read_text()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        remove_cluster_containers(log.read_text())


def remove_cluster_containers(log: str) -> None:
    """After a failure: the containers of this cluster (its id is in the workers' logs)."""
    found = re.search(r"in cluster ([0-9a-f]+)", log)
    if found is None:
        return
    client = docker.from_env()
    try:
        label = f"kube.cluster={found.group(1)}"
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    finally:
        client.close()


def pattern(expected: str, task_id: str = EXAMPLE_ID) -> str:
    """A line the README shows as a regex: its example id, node names, times and URL stand
    for whatever this run has."""
    text = re.escape(expected)
    text = text.replace(re.escape(EXAMPLE_URL), r"amqp://\S+")
    text = text.replace(re.escape(EXAMPLE_ID), re.escape(task_id))
    text = re.sub(r"myhost\\-\d", r"\\S+-\\d+", text)  # any of the workers
    return re.sub(r"\d\d:\d\d:\d\d", r"\\d\\d:\\d\\d:\\d\\d", text)


def test_the_readme_quick_start_runs_as_written(
    shell: Shell, kube_up: Path, busybox_image: str
) -> None:
    # given `kube up`, ready as the README shows it
    shown = block("README.md", "quick-start: up-output").splitlines()
    wait_for(lambda: shown[-1] in kube_up.read_text(), timeout=120, what="kube up ready")
    printed = [line for line in kube_up.read_text().splitlines() if line.startswith("kube up:")]
    for line in shown:
        expected = pattern(line)
        # its hint names an image this engine has, busybox or the local one
        expected = expected.replace(re.escape(busybox_image), r"(?:busybox|\S+)")
        # and the broker of the test's vhost, read from a file (no password shown)
        env = r'(?:KUBE_AMQP_URL=(?:"\$\(cat\ \S+\)"|\S+)\ )?'
        expected = expected.replace(r"`kube\ ", rf"`{env}kube\ ")
        assert any(re.fullmatch(expected, p) for p in printed), f"{line!r} not in\n{printed}"

    # when the offline run block runs, line by line
    lines = commands(block("README.md", "quick-start: run-offline"))
    assert lines[0] == ". .venv/bin/activate"
    shell.ok(lines[0])
    shell.ok(lines[1])  # the local image: built, or there already
    run_line = lines[2]
    run = shell.ok(run_line, timeout=180)

    # then it prints what the README shows: the id, progress on stderr, the outcome
    transcript = block("README.md", "quick-start: output").splitlines()
    assert transcript[0] == f"$ {run_line}"
    task_id = run.stdout.splitlines()[0]
    assert re.fullmatch(r"hello-[0-9a-f]{8}", task_id), run.stdout
    logs_at = transcript.index("$ kube logs hello")
    out = [line for line in transcript[1:logs_at] if not line.startswith("  ")]
    progress = [line for line in transcript[1:logs_at] if line.startswith("  ")]
    got = run.stdout.splitlines()
    assert run.stderr.splitlines(), "no progress shown"
    head = pattern(progress[0], task_id).split(r"scheduled")[0]
    assert all(re.match(head, line) for line in run.stderr.splitlines()), run.stderr
    if " completed on " in run.stdout:  # the id, the task's output, how it ended
        assert len(got) == len(out), run.stdout
        for line, printed in zip(out, got, strict=True):
            assert re.fullmatch(pattern(line, task_id), printed), (line, printed)
        assert re.fullmatch(pattern(progress[-1], task_id), run.stderr.splitlines()[-1])
    else:  # still running after a second (a loaded machine): the id and where it runs
        assert len(got) == 2 and got[0] == task_id, run.stdout
        assert re.fullmatch(pattern(out[-1], task_id).replace("completed", "running"), got[1])
        wait_for(
            lambda: "completed" in shell.ok(f"kube inspect {task_id}").stdout,
            what="the task to end",
        )

    # and `kube logs` by the task's name shows its output again
    assert lines[3].split("#")[0].strip() == "kube logs hello"
    logs = shell.ok("kube logs hello")
    assert logs.stdout.splitlines() == transcript[logs_at + 1 :]

    # and the "Next" block's service runs, and answers where `kube endpoints` says
    next_lines = commands(block("README.md", "quick-start: next"))
    started = shell.ok(next_lines[0], timeout=180)
    assert started.stdout.splitlines()[-1] == "web: 2/2 running", started.stdout
    assert "web" in shell.ok(next_lines[1]).stdout
    endpoints = shell.ok(next_lines[2]).stdout.splitlines()
    assert len(endpoints) == 2 and all(re.fullmatch(r"\S+:\d+", e) for e in endpoints)
