"""The CLI's side of `kube exec`: the terminal in raw mode and back, stdin forwarded, the
exit code passed on. Driven through a real pseudo-terminal (the pty module) with a stand-in
channel that echoes, as the mock runtime's exec does."""

from __future__ import annotations

import io
import os
import pty
import queue
import signal
import termios
import threading
from collections.abc import Iterator

import pytest

from kube import terminal
from kube.exec_cli import (
    EXEC_FAILED,
    Ended,
    ExecFailed,
    Output,
    Plan,
    drive,
    ended,
    exit_status,
    plan,
)
from kube.sessions import Opened
from shared.errors import SettingsError
from shared.sessions import EndReason, StreamEnd
from tests.support.waiting import wait_for


class EchoChannel:
    """Echoes stdin back as stdout; the end of input ends it with `code`."""

    def __init__(self, code: int | None = 0) -> None:
        self.code = code
        self.sent: list[tuple[bytes, bool, tuple[int, int] | None]] = []
        self.items: queue.Queue[Output | Ended | None] = queue.Queue()
        self.closed = False

    def send(
        self, *, stdin: bytes = b"", eof: bool = False, resize: tuple[int, int] | None = None
    ) -> None:
        self.sent.append((stdin, eof, resize))
        if stdin:
            self.items.put((1, stdin))
        if eof:
            self.items.put(Ended(self.code, None if self.code is not None else "node down"))

    def room(self) -> int:
        return 1 << 20

    def receive(self, timeout: float) -> list[Output | Ended]:
        try:
            first = self.items.get(timeout=timeout)
        except queue.Empty:
            return []
        return [] if first is None else [first]

    def wake(self) -> None:
        self.items.put(None)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    """(master, slave) of a new pseudo-terminal, closed after."""
    master, slave = pty.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def test_raw_mode_is_left_on_an_error_and_on_sigterm(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError), terminal.raw(slave):
        assert termios.tcgetattr(slave) != before  # raw: no echo, no signals from keys
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before
    with pytest.raises(terminal.TerminalClosed), terminal.raw(slave):
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: False, timeout=5)  # the signal arrives here
    assert termios.tcgetattr(slave) == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )


def test_a_window_change_is_reported_with_the_new_size(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    sizes: list[tuple[int, int]] = []
    with terminal.raw(slave, on_resize=lambda rows, cols: sizes.append((rows, cols))):
        termios.tcsetwinsize(slave, (33, 111))
        os.kill(os.getpid(), signal.SIGWINCH)
        wait_for(lambda: sizes, what="the resize", timeout=5)
    assert sizes[-1] == (33, 111)
    assert terminal.window_size(slave) == (33, 111)


def test_ctrl_c_passes_through_as_a_byte_and_the_exit_code_is_kept(
    pty_pair: tuple[int, int],
) -> None:
    master, slave = pty_pair
    channel = EchoChannel(code=7)
    out = io.BytesIO()
    how = plan(interactive=True, want_tty=True, stdin_fd=slave)
    assert how.tty and how.forward_stdin and how.size is not None

    def keys() -> None:  # a person at the terminal, while drive() holds the main thread
        wait_for(lambda: termios.tcgetattr(slave)[3] & termios.ICANON == 0, what="raw mode")
        os.write(master, b"a\x03")
        wait_for(lambda: out.getvalue() == b"a\x03", what="both bytes echoed")
        channel.send(eof=True)  # the command ends

    typist = threading.Thread(target=keys)
    typist.start()
    assert drive(channel, how, slave, out, io.BytesIO()) == 7
    typist.join(10)
    assert not channel.closed  # it ended by itself: nothing to kill
    assert termios.tcgetattr(slave)[3] & termios.ICANON  # cooked again


def test_piped_stdin_is_forwarded_and_its_end_sent() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"hi\n")
    os.close(write_end)
    channel = EchoChannel(code=0)
    out = io.BytesIO()
    try:
        how = plan(interactive=False, want_tty=False, stdin_fd=read_end)
        assert how == Plan(tty=False, forward_stdin=True, size=None)
        assert drive(channel, how, read_end, out, io.BytesIO()) == 0
    finally:
        os.close(read_end)
    assert out.getvalue() == b"hi\n"
    assert [eof for _, eof, _ in channel.sent] == [False, True]


def test_a_session_without_an_exit_code_is_kube_s_failure() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        how = plan(interactive=False, want_tty=False, stdin_fd=read_end)
        with pytest.raises(ExecFailed, match="node down"):
            drive(EchoChannel(code=None), how, read_end, io.BytesIO(), io.BytesIO())
    finally:
        os.close(read_end)
    assert EXEC_FAILED == 125


def test_tty_needs_a_terminal_and_exit_codes_fit_a_status() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(SettingsError, match="not a terminal"):
            plan(interactive=True, want_tty=True, stdin_fd=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert [exit_status(c) for c in (0, 3, 255, 256, -1)] == [0, 3, 255, 0, 255]


def test_a_worker_s_refusal_is_said_once() -> None:
    opened = Opened("1" * 32, "n1", "web-1", 1)
    end = StreamEnd(
        reason=EndReason.NOT_ALLOWED,
        node="n1",
        error="exec in web-1 refused by the security policy of n1",
    )
    problem = ended(end, opened).problem or ""
    assert problem.count("refused by the security policy of n1") == 1, problem
    assert "--allow-exec" in problem
    # an error that says more than the reason is still given
    failed = StreamEnd(reason=EndReason.FAILED, node="n1", error="engine said no")
    assert (ended(failed, opened).problem or "").endswith(": engine said no")
