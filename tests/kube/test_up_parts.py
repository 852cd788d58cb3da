"""The pieces that make `kube up` safe, alone: its output sink, its leftovers, its hint."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

from kube import leftovers
from kube.sink import Gone, Sink
from kube.up import Child, LocalCluster, UpOptions, _say_ready, broker_env
from shared.images import BUILD_BUSYBOX, LOCAL_BUSYBOX
from shared.settings import Settings


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


class HungUp(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_a_closed_pipe_marks_the_sink_gone_once_and_drops_what_follows() -> None:
    # given a sink whose reader went away
    calls: list[Gone] = []
    sink = Sink(ClosedPipe(), on_gone=calls.append)
    # when two lines are written
    sink.line("one")
    sink.line("two")
    # then the first failure marks it gone and says so once, and nothing raises
    assert (sink.gone, calls) == (Gone.PIPE_CLOSED, [Gone.PIPE_CLOSED])


def test_a_hung_up_terminal_marks_the_sink_gone() -> None:
    sink = Sink(HungUp())
    sink.line("one")
    assert sink.gone is Gone.TERMINAL_CLOSED


def test_a_live_sink_writes_lines() -> None:
    out = io.StringIO()
    Sink(out).line("hello")
    assert out.getvalue() == "hello\n"


def test_only_the_folders_of_gone_processes_are_stale(tmp_path: Path) -> None:
    # given the folder of a process that has exited, one of this live process, and another
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    gone = tmp_path / f"kube-up-{dead.stdout.strip()}-abc"
    live = tmp_path / f"kube-up-{os.getpid()}-def"
    other = tmp_path / "kube-up-notapid"
    for folder in (gone, live, other):
        folder.mkdir()
    # then only the first is stale
    assert leftovers.stale(tmp_path) == [gone]
    leftovers.remove(gone)
    leftovers.remove(gone)  # a second removal (another kube up's) is fine
    assert not gone.exists()


def test_without_a_busybox_image_the_hint_says_how_to_build_one() -> None:
    out = io.StringIO()
    cluster = LocalCluster(Settings(), [], Sink(out))
    _say_ready(cluster, UpOptions(), Settings(), None)
    text = out.getvalue()
    assert BUILD_BUSYBOX in text and f"--image {LOCAL_BUSYBOX}" in text


def test_with_an_image_the_hint_names_it() -> None:
    out = io.StringIO()
    _say_ready(LocalCluster(Settings(), [], Sink(out)), UpOptions(), Settings(), "busybox")
    assert "kube run --name hello --image busybox --wait" in out.getvalue()
    assert BUILD_BUSYBOX not in out.getvalue()


def test_the_hint_names_a_broker_that_is_not_the_default_so_that_it_can_be_pasted(
    tmp_path: Path,
) -> None:
    guest = "amqp://guest:guest@localhost:5672/mine"
    assert broker_env(Settings()) == ""
    # a password, even guest's, is never shown: the command reads the URL from a file
    # only this user can read
    url_file = tmp_path / "broker-url"
    said = broker_env(Settings(amqp_url=guest), url_file)
    assert said == f'KUBE_AMQP_URL="$(cat {url_file})" ' and "guest@" not in said
    assert url_file.read_text() == guest and url_file.stat().st_mode & 0o777 == 0o600
    # without a file, the password is shown as ***: the reader puts theirs in
    assert (
        broker_env(Settings(amqp_url=guest))
        == "KUBE_AMQP_URL='amqp://guest:***@localhost:5672/mine' "
    )
    secret = Settings(amqp_url="amqp://bob:s3cret@broker:5672/v", ca_file="/etc/ca.pem")
    said = broker_env(secret)
    assert said == "KUBE_AMQP_URL='amqp://bob:***@broker:5672/v' KUBE_AMQP_CA=/etc/ca.pem "
    out = io.StringIO()
    _say_ready(LocalCluster(secret, [], Sink(out)), UpOptions(), secret, "busybox")
    assert f"try `{said}kube run --name hello" in out.getvalue()
    assert "s3cret" not in out.getvalue()


def test_an_output_that_fails_otherwise_keeps_the_error_to_say_it() -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    sink = Sink(Full())
    sink.line("x")
    assert sink.gone is Gone.OTHER
    assert sink.error is not None and sink.error.strerror == "No space left on device"


def test_a_stop_asked_while_the_children_start_starts_no_more_of_them() -> None:
    # given a stop asked (SIGTERM) before the children are all started
    stopping = threading.Event()
    stopping.set()
    out = io.StringIO()
    cluster = LocalCluster(Settings(), [Child("manager", [sys.executable, "-c", ""])], Sink(out))
    # when the cluster starts
    cluster.start(stopping)
    # then no child is started, and stopping it has nothing to wait for
    assert cluster.procs == {} and cluster.stop() == {}
    assert "started" not in out.getvalue()
