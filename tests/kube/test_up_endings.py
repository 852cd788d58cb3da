"""Every way `kube up` ends leaves no kube process and no temporary folder behind.

Through the real CLI on a real broker, with the mock runtime (no containers to wait for).
A process of the cluster is found by its command line: the workers name the test's
unique node prefix, the manager its database in the test's own TMPDIR.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from kube.client import Client
from shared import topology
from shared.rpc import RpcChannel
from shared.settings import Settings
from tests.conftest import ROOT
from tests.support.waiting import wait_for

READY = "kube run"  # the hint kube up prints once the cluster is ready


@dataclass
class Up:
    """One `kube up` of a test: its TMPDIR, its node prefix, how to find its processes."""

    url: str
    tmp: Path
    prefix: str = field(default_factory=lambda: f"upe{uuid.uuid4().hex[:6]}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBE_AMQP_URL": self.url,
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(self.tmp),
        }

    def argv(self, *extra: str) -> list[str]:
        flags = ("--workers", "1", "--runtime", "mock", "--name-prefix", self.prefix)
        return [sys.executable, "-m", "kube", "up", *flags, *extra]

    def start(self, argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, env=self.env, cwd=ROOT, **popen)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def processes(self) -> list[psutil.Process]:
        """The live processes of this cluster: kube up, its manager and its workers."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            line = " ".join(proc.info["cmdline"] or ())
            if proc.info["status"] == psutil.STATUS_ZOMBIE or "kube" not in line:
                continue
            if self.prefix in line or str(self.tmp) in line:
                found.append(proc)
        return found

    def children(self) -> list[psutil.Process]:
        return [p for p in self.processes() if " up " not in " ".join(p.cmdline())]

    def wait_ready(self, log: Path) -> None:
        wait_for(lambda: READY in log.read_text(), timeout=60, what=f"ready; log:\n{log}")

    def assert_clean(self, what: str = "") -> None:
        """Then: no kube process of this cluster, no temporary folder."""
        wait_for(lambda: not self.processes(), timeout=30, what=f"no kube process left {what}")
        assert list(self.tmp.iterdir()) == [], what

    def kill_all(self) -> None:
        for proc in self.processes():
            proc.kill()
        for popen in self.procs:
            if popen.poll() is None:
                popen.kill()
            popen.wait(10)


@pytest.fixture
def up(vhost: str, tmp_path: Path) -> Iterator[Up]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    one = Up(vhost, tmp)
    yield one
    one.kill_all()


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["sigint", "sigterm", "sighup"]
)
def test_a_stop_signal_stops_the_children_and_removes_the_temporary_folder(
    up: Up, tmp_path: Path, sig: signal.Signals
) -> None:
    # given a running kube up, its manager and worker, and its temporary folder
    log = tmp_path / "up.log"
    proc = up.start(up.argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log)
    assert len(up.children()) == 2, up.processes()
    assert [p.name for p in up.tmp.iterdir()][0].startswith(f"kube-up-{proc.pid}-")
    # when it gets the signal
    proc.send_signal(sig)
    # then it exits 0, and leaves nothing behind
    assert proc.wait(60) == 0, log.read_text()
    up.assert_clean(log.read_text())
    assert "Traceback" not in log.read_text()


def test_a_closed_pipe_stops_the_children_and_removes_the_temporary_folder(up: Up) -> None:
    # given `kube up | head -1`
    shell = up.start(
        ["bash", "-o", "pipefail", "-c", f"{' '.join(up.argv())} | head -1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # when head has its line and goes away, then kube up stops: the pipeline ends
    out, err = shell.communicate(timeout=60)
    # with the reader-gone code, the one line head read, no traceback, nothing left behind
    assert shell.returncode == 141, err
    assert out.decode().startswith("kube up: started manager"), out
    assert len(out.decode().splitlines()) == 1, out
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode(), err
    up.assert_clean(err.decode())


def test_closing_its_terminal_stops_the_children_and_removes_the_temporary_folder(
    up: Up,
) -> None:
    # given kube up on a terminal of its own (a pty, its controlling terminal)
    master, slave = pty.openpty()
    try:
        proc = up.start(["setsid", "--ctty", *up.argv()], stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    seen = b""
    try:
        while READY.encode() not in seen:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, f"kube up printed nothing for 60s: {seen.decode(errors='replace')}"
            seen += os.read(master, 65536)
        assert len(up.children()) == 2, up.processes()
    finally:
        # when the terminal is closed (its window, an ssh session that drops)
        os.close(master)
    # then kube up (sent SIGHUP by the kernel) stops everything and exits
    proc.wait(60)
    up.assert_clean(seen.decode(errors="replace"))


def test_an_exception_of_its_own_stops_the_children_and_removes_the_temporary_folder(
    up: Up, tmp_path: Path
) -> None:
    # given a kube up that fails once its cluster is ready (a bug, as far as it knows)
    argv = up.argv()[3:]  # up --workers ...
    crash = (
        "import sys, kube.up\n"
        "def boom(*_): raise RuntimeError('boom')\n"
        "kube.up._say_ready = boom\n"
        "from kube.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    log = tmp_path / "up.log"
    proc = up.start([sys.executable, "-c", crash], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    # when it raises, then it exits as a bug (70, one line), and leaves nothing behind
    assert proc.wait(60) == 70, log.read_text()
    assert "RuntimeError: boom" in log.read_text()
    up.assert_clean(log.read_text())


def test_when_killed_outright_its_children_die_and_the_next_kube_up_removes_its_folder(
    up: Up, tmp_path: Path
) -> None:
    # given a running kube up
    log = tmp_path / "up.log"
    proc = up.start(up.argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log)
    children = up.children()
    assert len(children) == 2, up.processes()
    # when it is killed with SIGKILL, which it cannot see
    proc.kill()
    proc.wait(10)
    # then its children die all the same (the kernel kills them), its folder stays
    wait_for(lambda: not up.processes(), timeout=30, what="the children to die")
    (left,) = up.tmp.iterdir()
    # and the next kube up removes it
    log2 = tmp_path / "up2.log"
    second = up.start(up.argv(), stdout=log2.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log2)
    assert f"removed what a killed kube up left: {left}" in log2.read_text()
    assert not left.exists()
    second.send_signal(signal.SIGINT)
    assert second.wait(60) == 0, log2.read_text()
    up.assert_clean(log2.read_text())


def test_a_second_kube_up_on_the_same_vhost_is_refused_naming_the_first(
    up: Up, tmp_path: Path
) -> None:
    # given a running kube up
    log = tmp_path / "up.log"
    first = up.start(up.argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log)
    # when another is started on the same broker and vhost
    other = Up(up.url, tmp_path / "other-tmp")
    other.tmp.mkdir()
    second = subprocess.run(
        other.argv(), env=other.env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    # then it is refused (exit 4) in one line naming what answers there, starting nothing
    assert second.returncode == 4, second.stdout + second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith("kube up: a kube manager already runs on"), second.stderr
    assert f"{up.prefix}-1 (ready)" in second.stderr and "guest:guest" not in second.stderr
    assert not other.processes() and list(other.tmp.iterdir()) == []
    # and the first runs on, untouched
    assert first.poll() is None
    with Client(Settings(amqp_url=up.url, request_timeout=5)) as client:
        assert [n.name for n in client.nodes()] == [f"{up.prefix}-1"]
    first.send_signal(signal.SIGINT)
    assert first.wait(60) == 0, log.read_text()
    up.assert_clean(log.read_text())


def test_two_kube_up_started_at_once_on_one_vhost_one_runs_the_other_is_refused(
    up: Up, tmp_path: Path
) -> None:
    # given two kube up of the same node names on one vhost
    other = Up(up.url, tmp_path / "other-tmp", prefix=up.prefix)
    other.tmp.mkdir()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    errs = [tmp_path / "a.err", tmp_path / "b.err"]
    # when they are started at the same instant
    procs = [
        one.start(one.argv(), stdout=log.open("wb"), stderr=err.open("wb"))
        for one, log, err in zip((up, other), logs, errs, strict=True)
    ]
    # then one of them exits 4 with the one-line refusal, never saying it is ready
    exited = wait_for(
        lambda: [i for i, proc in enumerate(procs) if proc.poll() is not None],
        timeout=90,
        what="one kube up to exit",
    )
    loser = exited[0]
    winner = 1 - loser
    refusal = errs[loser].read_text()
    assert procs[loser].returncode == 4, logs[loser].read_text() + refusal
    assert refusal.count("\n") == 1 and refusal.startswith("kube up: a kube manager already runs")
    assert READY not in logs[loser].read_text() and "exited" not in logs[loser].read_text()
    # and the other runs on, ready, until stopped
    up.wait_ready(logs[winner])
    assert procs[winner].poll() is None
    procs[winner].send_signal(signal.SIGINT)
    assert procs[winner].wait(60) == 0, logs[winner].read_text()
    up.assert_clean(logs[winner].read_text())
    other.assert_clean()


def test_a_kube_up_waiting_for_another_to_start_stops_on_sigterm(up: Up, tmp_path: Path) -> None:
    # given another kube up starting on the vhost (the test holds its lock)
    with RpcChannel(Settings(amqp_url=up.url), name="test-holds-up-lock") as channel:
        assert channel.hold(topology.UP_LOCK)
        log = tmp_path / "up.log"
        proc = up.start(up.argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
        # when this one, waiting for it, gets SIGTERM
        wait_for(lambda: "waiting for it" in log.read_text(), timeout=30, what="it to wait")
        proc.send_signal(signal.SIGTERM)
        # then it exits at once, having started nothing
        assert proc.wait(15) == 0, log.read_text()
    assert "stopped before the cluster started" in log.read_text()
    assert "Traceback" not in log.read_text()
    up.assert_clean(log.read_text())


def test_an_output_that_cannot_be_written_is_an_error_said_on_stderr(up: Up) -> None:
    # given an output that fails every write (a full disk)
    with open("/dev/full", "wb") as full:
        # when kube up runs into it
        proc = up.start(up.argv(), stdout=full, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=90)
    # then it stops its cluster and exits 1, saying why on stderr
    assert proc.returncode == 1, err
    assert b"kube up: cannot write its output (No space left on device); stopped" in err, err
    assert b"Traceback" not in err
    up.assert_clean(err.decode())


def test_the_hint_works_when_pasted_in_a_terminal_without_the_broker_url(
    up: Up, tmp_path: Path
) -> None:
    # given a kube up on a vhost of its own (not the default URL), ready
    log = tmp_path / "up.log"
    proc = up.start(up.argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    up.wait_ready(log)
    hint = next(line for line in log.read_text().splitlines() if READY in line)
    command = hint.split("`")[1]
    # when its hint is run in a shell that has no KUBE_AMQP_URL
    env = {k: v for k, v in up.env.items() if k != "KUBE_AMQP_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    ran = subprocess.run(
        ["sh", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    # then it reaches this cluster and runs the task
    assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, log.read_text()
    up.assert_clean(log.read_text())
