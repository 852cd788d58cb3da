"""Hostile input through the real CLI, against a running cluster: each case exits with
the code docs/cli.md gives and says what was wrong in one line, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kube.cli import INTERRUPTED, PIPE_CLOSED, REFUSED, USAGE
from tests.conftest import ROOT, Cluster

pytestmark = pytest.mark.e2e


def spec_files(folder: Path) -> dict[str, Path]:
    """Spec files that cannot be used, each in its own way."""
    files = {
        "array": "[1, 2]",
        "invalid": "{bad",
        "empty": "",
        "null": "null",
        "twice": '{"name": "a", "name": "b", "image": "x"}',
        "nan": '{"name": "a", "image": "x", "cpu": NaN}',
        "wrongtype": '{"name": "a", "image": 5}',
        "deep": "[" * 100_000,
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(text)
    paths["binary"] = folder / "binary.json"
    paths["binary"].write_bytes(b"\xff\xfe\x00{")
    return paths


def cases(folder: Path) -> list[tuple[list[str], int]]:
    """(arguments, the exit code they must give)."""
    files = spec_files(folder)
    run = ["run", "--name", "h", "--image", "x"]
    return [
        # files
        (["run", "-f", "/nonexistent.json"], USAGE),
        (["run", "-f", str(folder)], USAGE),
        *((["run", "-f", str(path)], USAGE) for path in files.values()),
        (["update", "web", "-f", str(files["array"])], USAGE),
        (["update", "web", "-f", str(files["wrongtype"])], USAGE),
        (["update", "web", "-f", "/nonexistent.json"], USAGE),
        # numbers
        (["scale", "web", "-1"], USAGE),
        (["scale", "web", "abc"], USAGE),
        (["scale", "web", "99999999999999999999"], USAGE),
        (["logs", "x", "--tail", "abc"], USAGE),
        (["logs", "x", "--tail", "-1"], USAGE),
        (["--timeout", "-1", "ps"], USAGE),
        (["--timeout", "nan", "ps"], USAGE),
        (["--timeout", "abc", "ps"], USAGE),
        ([*run, "--cpu", "abc"], USAGE),
        ([*run, "--cpu", "-1"], USAGE),
        ([*run, "--memory", "lots"], USAGE),
        ([*run, "--replicas", "-1"], USAGE),
        ([*run, "-p", "99999"], USAGE),
        ([*run, "--wait", "--wait-timeout", "-1"], USAGE),
        # words
        (["frobnicate"], USAGE),
        ([], USAGE),
        (["inspect"], USAGE),
        (["stop"], USAGE),
        (["logs"], USAGE),
        (["scale", "web"], USAGE),
        (["run"], USAGE),
        (["run", "--image", "x"], USAGE),
        (["run", "--name", "bad name", "--image", "x"], USAGE),
        ([*run, "--env", "=x"], USAGE),
        (["inspect", "bad!"], USAGE),
        (["inspect", "x" * 5000], USAGE),
        (["--amqp-url", "not a url", "ps"], USAGE),
        (["--amqp-url", "http://host/", "ps"], USAGE),
        (["--amqp-url", "amqp://[::1", "ps"], USAGE),
        (["--amqp-url", "amqp://guest:guest@127.0.0.1:99999/", "ps"], USAGE),
        # what the manager does not know
        (["inspect", "no-such-task"], REFUSED),
        (["logs", "no-such-task"], REFUSED),
        (["stop", "no-such-task"], REFUSED),
        (["scale", "no-such-service", "2"], REFUSED),
        (["drain", "no-such-node"], REFUSED),
        (["rm", "no-such-task"], REFUSED),
    ]


def test_hostile_input_is_one_line_and_its_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    wrong: list[str] = []
    for args, code in cases(tmp_path):
        # when the CLI is given it
        result = cluster.kube("--timeout", "5", *args)  # a --timeout in args wins
        # then it exits with the code for it, saying what is wrong in one line on stderr,
        # and nothing on stdout
        said = result.stderr.strip()
        if (
            result.returncode != code
            or "Traceback" in result.stderr + result.stdout
            or result.stdout  # errors go to stderr, and nothing was done to print
            or not said
            or len(said.splitlines()) != 1
        ):
            wrong.append(f"{args!r:.200}: exit {result.returncode} (not {code}): {said!r:.400}")
    assert not wrong, "\n".join(wrong)


def test_events_json_into_head_says_nothing_on_stderr(cluster: Cluster) -> None:
    # when the snapshot of events is piped into `head -1` (it holds more lines)
    piped = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m kube events --json | head -1; exit ${{PIPESTATUS[0]}}",
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    # then it ends quietly: done (0) or told the reader left (141), and never a traceback
    assert piped.returncode in (0, PIPE_CLOSED) and piped.stderr == "", piped.stderr
    assert len(piped.stdout.splitlines()) == 1


def test_events_into_a_pipe_closed_early_ends_quietly(cluster: Cluster, busybox_image: str) -> None:
    # given `kube events --json --follow | head -3`: a reader that leaves after three lines
    follow = subprocess.Popen(
        [sys.executable, "-m", "kube", "events", "--json", "--follow"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert follow.stdout is not None
        for _ in range(3):  # the leader and the two nodes
            assert follow.stdout.readline()
        follow.stdout.close()
        # when events come after the reader left
        cluster.kube(
            "run", "--name", "late", "--image", busybox_image, "--pull-policy", "never",
            "--", "sleep", "300",
        )  # fmt: skip
        follow.wait(60)
        # then it ends with the closed-pipe code and says nothing
        assert follow.returncode == PIPE_CLOSED
        assert follow.stderr is not None and follow.stderr.read() == b""
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)


def test_ctrl_c_on_events_follow_exits_130(cluster: Cluster) -> None:
    # given `kube events --json --follow` printing the live feed (a line at a time)
    follow = subprocess.Popen(
        [sys.executable, "-m", "kube", "events", "--json", "--follow"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert follow.stdout is not None and follow.stdout.readline()
        # when Ctrl-C interrupts it
        follow.send_signal(signal.SIGINT)
        follow.wait(30)
        # then it exits 130, interrupted (docs/cli.md), with one line and no traceback
        assert follow.stderr is not None
        said = follow.stderr.read().decode()
        assert follow.returncode == INTERRUPTED, said
        assert "Traceback" not in said, said
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(10)
