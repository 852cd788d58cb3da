"""The waits of the CLI through the real `kube`: stop, scale, drain and update wait for the
result with a progress display (plain lines in a pipe, a spinner on a terminal), bounded
by --wait-timeout; Ctrl-C leaves the work to the cluster; `kube run --wait` shows the
output of a task that ended; `kube ps` and `inspect` show `stopping`."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kube.client import Client
from shared.models import TaskRecord
from shared.settings import Settings
from tests.conftest import ROOT, Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SLOW_TO_STOP = ("--", "sleep", "300")
"""`sleep` as PID 1 ignores SIGTERM: its container stops when the engine kills it, 10 s
after the stop (the worker's stop timeout), a window to look at a task `stopping`."""

QUICK_TO_STOP = ("--", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")

TIMED_OUT, INTERRUPTED = 124, 130


def ok(result: subprocess.CompletedProcess[str], cluster: Cluster) -> str:
    assert result.returncode == 0, result.stderr + cluster.logs()
    return result.stdout


def start(cluster: Cluster, image: str, name: str, *args: str) -> str:
    """A running task (`--wait`); its id."""
    run = cluster.kube(
        "run", "--name", name, "--image", image, "--pull-policy", "never", "--wait", *args
    )
    return ok(run, cluster).split()[0]


def tasks(cluster: Cluster) -> list[TaskRecord]:
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        return client.list()


def task(cluster: Cluster, task_id: str) -> TaskRecord:
    return next(t for t in tasks(cluster) if t.id == task_id)


def live(cluster: Cluster, service: str) -> list[TaskRecord]:
    return [t for t in tasks(cluster) if t.service == service and not t.state.terminal]


def plain(text: str) -> None:
    """Output for a pipe: no escape sequence, no carriage return."""
    assert "\x1b" not in text and "\r" not in text, repr(text)


def test_run_wait_follows_a_crashing_task_through_its_restarts_to_failed(
    cluster: Cluster, busybox_image: str
) -> None:
    # when a user runs a command that fails at once, under the default restart policy
    run = cluster.kube(
        *("run", "--name", "oops", "--image", busybox_image, "--pull-policy", "never"),
        *("--wait", "--", "sh", "-c", "sleep 0.5; echo oops; exit 3"),
    )  # fmt: skip
    # then the wait follows its restarts and says it failed, with its output: not `running`
    assert run.returncode == 1, run.stdout + run.stderr + cluster.logs()
    lines = run.stdout.splitlines()
    assert "oops" in lines and lines[-1].startswith(f"{lines[0]} failed"), run.stdout
    assert task(cluster, lines[0]).state.value == "failed"


def test_run_wait_shows_the_output_of_a_task_that_ends(
    cluster: Cluster, busybox_image: str
) -> None:
    # when a user runs a one-shot command and waits
    run = cluster.kube(
        "run",
        "--name",
        "hello",
        "--image",
        busybox_image,
        "--pull-policy",
        "never",
        "--wait",
        "--",
        "echo",
        "hello",
    )
    # then they see its output between the task id and how it ended, as docker run shows it
    lines = ok(run, cluster).splitlines()
    assert lines[1:] == ["hello", f"{lines[0]} completed on {task(cluster, lines[0]).node}"]
    plain(run.stderr)
    # with --json, stdout is one JSON document, the output in its "output" field
    as_json = cluster.kube(
        "run",
        "--name",
        "hello2",
        "--image",
        busybox_image,
        "--pull-policy",
        "never",
        "--wait",
        "--json",
        "--",
        "echo",
        "hi",
    )
    data = json.loads(ok(as_json, cluster))
    assert data["state"] == "completed" and data["output"] == "hi\n"
    # and -d leaves the output out
    detached = cluster.kube(
        "run",
        "--name",
        "hello3",
        "--image",
        busybox_image,
        "--pull-policy",
        "never",
        "--wait",
        "-d",
        "--",
        "echo",
        "unseen",
    )
    assert "unseen" not in ok(detached, cluster) and "completed" in detached.stdout


def test_stop_waits_for_the_end_and_ps_shows_stopping(cluster: Cluster, busybox_image: str) -> None:
    # given a task whose container takes 10 s to stop
    task_id = start(cluster, busybox_image, "slow", *SLOW_TO_STOP)
    # when a user asks it to stop without waiting
    ok(cluster.kube("stop", "-d", task_id), cluster)
    # then it is recorded running and asked to stop, as `--json` shows it
    recorded = task(cluster, task_id)
    assert (recorded.state.value, recorded.desired_state) == ("running", "stopped")
    # and ps and inspect, asked at once (the container stops within 10 s), show it stopping
    ps, inspect = kube_process(cluster, "ps"), kube_process(cluster, "inspect", task_id)
    shown = [proc.communicate(timeout=60)[0] for proc in (ps, inspect)]
    row = next(line for line in shown[0].splitlines() if task_id in line)
    assert " stopping " in row, row
    assert "state:       stopping" in shown[1], shown[1]
    # and `kube stop` without -d returns once the task ended, showing plain lines in a pipe
    stop = cluster.kube("stop", task_id)
    assert ok(stop, cluster).strip() == task_id
    assert task(cluster, task_id).state.value == "completed"
    assert f"{task_id}: stopping" in stop.stderr
    plain(stop.stderr)


def test_a_wait_that_times_out_says_so_in_one_line_with_its_own_code(
    cluster: Cluster, busybox_image: str
) -> None:
    # given a task slow to stop
    task_id = start(cluster, busybox_image, "slowpoke", *SLOW_TO_STOP)
    # when the stop is waited for less time than it takes
    stop = cluster.kube("stop", task_id, "--wait-timeout", "1")
    # then the wait ends with the timeout's exit code and one line saying the stop goes on
    assert stop.returncode == TIMED_OUT, stop.stderr
    last = stop.stderr.strip().splitlines()[-1]
    assert last.startswith("kube: gave up waiting after 1s") and "carries on" in last, last
    assert "Traceback" not in stop.stderr
    # and it does go on
    wait_for(lambda: task(cluster, task_id).state.terminal, what="the stop", timeout=30)


def test_scale_waits_for_the_replicas(cluster: Cluster, busybox_image: str) -> None:
    # given a service of one task
    start(cluster, busybox_image, "web", "--replicas", "1", *QUICK_TO_STOP)
    # when it is scaled up, then the command returns once three run
    assert ok(cluster.kube("scale", "web", "3"), cluster).strip() == "web scaled to 3"
    assert [t.state.value for t in live(cluster, "web")] == ["running"] * 3
    # when it is scaled down, then the command returns once the extra ones ended
    down = cluster.kube("scale", "web", "1")
    ok(down, cluster)
    # and its display never shows more running than the target over it ("3/1")
    assert "/1 running" not in down.stderr.replace(" 1/1 running", ""), down.stderr
    assert [t.state.value for t in live(cluster, "web")] == ["running"]
    # and -d returns at once, saying the work is under way
    assert "under way" in ok(cluster.kube("scale", "web", "2", "-d"), cluster)


def test_update_waits_until_every_task_runs_the_new_spec(
    cluster: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    # given a service of two tasks
    start(cluster, busybox_image, "app", "--replicas", "2", "--env", "V=1", *QUICK_TO_STOP)
    new = tmp_path / "v2.json"
    new.write_text(
        json.dumps(
            {
                "image": busybox_image,
                "pull_policy": "never",
                "env": {"V": "2"},
                "command": list(QUICK_TO_STOP[1:]),
            }
        )
    )
    # when it is updated, then the command returns once both tasks run the new spec
    assert ok(cluster.kube("update", "app", "-f", str(new)), cluster).strip() == "app updated"
    now = live(cluster, "app")
    assert [(t.state.value, t.spec.env) for t in now] == [("running", {"V": "2"})] * 2


def test_an_update_that_pauses_ends_the_wait_with_the_reason(
    cluster: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    # given a service, and a new spec whose tasks fail
    start(cluster, busybox_image, "flaky", "--replicas", "1", *QUICK_TO_STOP)
    new = tmp_path / "bad.json"
    new.write_text(
        json.dumps({"image": busybox_image, "pull_policy": "never", "command": ["false"]})
    )
    # when the service is updated onto it
    update = cluster.kube("update", "flaky", "-f", str(new))
    # then the wait ends as the update pauses, with the reason, and the old task runs on
    assert update.returncode == 1, update.stderr
    last = update.stderr.strip().splitlines()[-1]
    assert last.startswith("kube: service flaky: update paused: task flaky-"), last
    assert [t.version for t in live(cluster, "flaky") if t.state.value == "running"] == [1]


def test_drain_waits_until_the_node_holds_no_task(cluster: Cluster, busybox_image: str) -> None:
    # given a service with a task on each node
    start(
        cluster, busybox_image, "spread", "--replicas", "2", "--spread", "kube.node", *QUICK_TO_STOP
    )
    node = cluster.nodes[0]
    assert node in {t.node for t in live(cluster, "spread")}
    # when the node is drained, then the command returns once no task runs there
    drain = cluster.kube("drain", node)
    assert ok(drain, cluster).strip() == f"{node} drained"
    assert all(t.node != node for t in live(cluster, "spread"))
    plain(drain.stderr)


def kube_process(
    cluster: Cluster, *args: str, terminal: int | None = None
) -> subprocess.Popen[str]:
    """`kube ARGS` left running, its stdout and stderr piped, or all three on `terminal`."""
    out = subprocess.PIPE if terminal is None else terminal
    return subprocess.Popen(
        [sys.executable, "-m", "kube", *args],
        env=cluster.env,
        cwd=ROOT,
        text=True,
        stdin=terminal,
        stdout=out,
        stderr=out,
    )


def interrupt_after(proc: subprocess.Popen[str], shown: str) -> str:
    """SIGINT once the wait shows `shown` on stderr; all it printed on stderr."""
    assert proc.stderr is not None
    seen = ""
    try:
        while shown not in seen:
            line = proc.stderr.readline()
            assert line, f"ended before showing {shown!r}: {seen}"
            seen += line
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return seen + rest


@pytest.mark.parametrize("command", ["run", "stop", "scale"])
def test_ctrl_c_during_a_wait_says_the_work_carries_on(
    cluster: Cluster, busybox_image: str, command: str
) -> None:
    # given a wait that takes a while: a task no node can take, a slow stop, a service
    # that cannot reach its replicas
    args: tuple[str, ...]
    if command == "run":
        args = (
            "run",
            "--name",
            "nowhere",
            "--image",
            busybox_image,
            "--constraint",
            "zone=nowhere",
            "--wait",
            "--",
            "true",
        )
        shown, hint = "pending", "kube stop nowhere-"
    elif command == "stop":
        task_id = start(cluster, busybox_image, "slow", *SLOW_TO_STOP)
        args, shown, hint = ("stop", task_id), "stopping", "kube ps"
    else:
        ok(
            cluster.kube(
                "run",
                "--name",
                "big",
                "--image",
                busybox_image,
                "--replicas",
                "1",
                "--constraint",
                "zone=nowhere",
                *QUICK_TO_STOP,
            ),
            cluster,
        )
        args, shown, hint = ("scale", "big", "2"), "0/2 running", "kube services"
    # when the user presses Ctrl-C while it waits
    proc = kube_process(cluster, *args)
    stderr = interrupt_after(proc, shown)
    # then kube says in one line that the work carries on and how to follow it
    assert proc.returncode == INTERRUPTED, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("kube: stopped waiting;") and "carries on in the cluster" in last
    assert hint in last, last
    assert "Traceback" not in stderr


def test_the_progress_shows_on_a_terminal(cluster: Cluster, busybox_image: str) -> None:
    # given a task slow to stop
    task_id = start(cluster, busybox_image, "tty", *SLOW_TO_STOP)
    # when `kube stop` runs on a terminal
    main, side = pty.openpty()
    proc = kube_process(cluster, "stop", task_id, terminal=side)
    os.close(side)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side closed, kube ended
                break
            if not chunk:
                break
            screen += chunk
        proc.wait(30)
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # then the wait shows a spinner line rewritten in place, and the result after it
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert f"{task_id}: stopping" in text and "\x1b[" in text and "\r" in text, repr(text)
    assert text.rstrip().endswith(task_id), repr(text)
