"""`kube exec TASK -- CMD ARGS...`: run a command in a task's container, here.

    kube exec web -- ls /srv              its output, and its exit code as kube's
    echo hi | kube exec web -- cat        stdin that is no terminal is forwarded (or -i)
    kube exec -it web -- sh               an interactive terminal: raw keys, window size

The command's exit code is kube's exit code. kube's own failures (refused, no manager,
the session lost) exit 125, as `docker exec` does, and always say why on stderr in a
line that starts with `kube:`; so a command that itself exits 125 is told apart by that
line, never silently (docs/cli.md#exit-codes).

The session's I/O runs on the main thread, which owns the broker connection; a thread of
its own reads stdin and wakes the main thread (`ExecChannel.wake`) for each read.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from kube import terminal
from kube.sessions import Opened, Sessions
from shared.errors import KubeError, SettingsError
from shared.execs import ExecRefusal, refusal_sentence
from shared.sessions import EndReason, ExecParams, Resize, StreamEnd

if TYPE_CHECKING:
    from kube.client import Client

EXEC_FAILED = 125
"""kube exec could not run the command, or lost it (docker exec's code for the same)."""

INTERRUPTED = 130
READ_SIZE = 4096
PUMP_CHUNKS = 64  # reads of stdin held here at most while the session has no room
POLL_SECONDS = 0.2  # the longest a window change waits to be sent


@dataclass(frozen=True)
class Ended:
    """The session's last word: the command's exit code, or why there is none."""

    exit_code: int | None
    problem: str | None = None  # for people, when exit_code is None


Output = tuple[int, bytes]  # (1 stdout or 2 stderr, bytes)


class ExecChannel(Protocol):
    """One exec session as the CLI drives it (kube/sessions.py opens it)."""

    def send(
        self, *, stdin: bytes = b"", eof: bool = False, resize: tuple[int, int] | None = None
    ) -> None:
        """Give the command input, the end of its input, or a new window size."""
        ...

    def room(self) -> int:
        """Bytes of stdin the session takes now (0: wait for the command to take some)."""
        ...

    def receive(self, timeout: float) -> list[Output | Ended]:
        """Output that came, waiting up to `timeout` (or until wake()) for some."""
        ...

    def wake(self) -> None:
        """Make a receive() in progress return now; callable from any thread."""
        ...

    def close(self) -> None:
        """End the session: the command is killed if it still runs."""
        ...


class ExecFailed(KubeError):
    """The session ended without the command's exit code."""


def add_parser(sub: Any) -> None:
    """The `exec` subcommand's flags."""
    parser = sub.add_parser(
        "exec",
        usage="kube exec [-h] [-i] [-t] TASK -- COMMAND [ARG ...]",
        help="run a command in a task's container (an operator's privilege)",
        description="Run a command in a task's container; its exit code is kube's"
        " (125: kube's own failure).",
    )
    parser.add_argument("id", metavar="TASK", help="a task's id, name, or the start of its id")
    parser.add_argument(
        "container_command",
        nargs="*",
        metavar="-- COMMAND",
        help="the command to run and its arguments, after --",
    )
    parser.add_argument(
        "-i", "--interactive", action="store_true", help="forward stdin (always when piped)"
    )
    parser.add_argument(
        "-t", "--tty", action="store_true", help="a terminal: raw keys, window size, Ctrl-C"
    )


@dataclass(frozen=True)
class Plan:
    """What a `kube exec` does with the local terminal."""

    tty: bool
    forward_stdin: bool
    size: tuple[int, int] | None


def plan(interactive: bool, want_tty: bool, stdin_fd: int) -> Plan:
    """Decide from the flags and what stdin is; SettingsError (usage) for -t without a
    terminal, as docker says 'the input device is not a TTY'."""
    stdin_is_terminal = terminal.is_terminal(stdin_fd)
    if want_tty and not stdin_is_terminal:
        raise SettingsError("kube exec -t: stdin is not a terminal (leave out -t)")
    return Plan(
        tty=want_tty,
        forward_stdin=interactive or not stdin_is_terminal,
        size=terminal.window_size(stdin_fd) if want_tty else None,
    )


def exit_status(code: int) -> int:
    """The command's exit code as this process's (a status is 0-255)."""
    return code % 256


class StdinPump:
    """Reads stdin on a thread of its own, hands it over through a bounded queue (a full
    one holds the reading up: a fast producer is paced); stop() ends it (no thread is
    left behind)."""

    def __init__(self, fd: int, wake: Callable[[], None]) -> None:
        # b"": the end of the input
        self.chunks: queue.Queue[bytes] = queue.Queue(maxsize=PUMP_CHUNKS)
        self._stopping = threading.Event()
        self._fd = fd
        self._wake = wake
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="kube-exec-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._fd, READ_SIZE)
            except OSError:
                data = b""
            while not self._put(data):
                if self._stopping.is_set():
                    return
            self._wake()
            if not data:
                return

    def _put(self, data: bytes) -> bool:
        try:
            self.chunks.put(data, timeout=POLL_SECONDS)
        except queue.Full:
            return False
        return True

    def stop(self) -> None:
        self._stopping.set()
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_r)
        os.close(self._stop_w)


def drive(
    channel: ExecChannel,
    how: Plan,
    stdin_fd: int,
    out: IO[bytes],
    err: IO[bytes],
) -> int:
    """Relay the session until it ends; return the command's exit status.

    With a tty, the local terminal is raw for the while (kube/terminal.py); without,
    Ctrl-C ends the session (killing the command) and kube exits 130."""
    resized: list[tuple[int, int]] = []

    def on_resize(rows: int, cols: int) -> None:
        # In a signal handler: only noted (pika's wake-up takes locks the interrupted
        # main thread may hold); the loop sends it within POLL_SECONDS.
        resized.append((rows, cols))

    pump = StdinPump(stdin_fd, channel.wake) if how.forward_stdin else None
    try:
        if how.tty:
            with terminal.raw(stdin_fd, on_resize):
                return _relay(channel, pump, resized, out, err)
        return _relay(channel, pump, resized, out, err)
    except KeyboardInterrupt:
        channel.close()
        return INTERRUPTED
    finally:
        if pump is not None:
            pump.stop()


def _relay(
    channel: ExecChannel,
    pump: StdinPump | None,
    resized: list[tuple[int, int]],
    out: IO[bytes],
    err: IO[bytes],
) -> int:
    forwarding = pump is not None
    while True:
        while forwarding and pump is not None and not pump.chunks.empty() and channel.room() > 0:
            data = pump.chunks.get_nowait()
            if data:
                channel.send(stdin=data)
            else:
                channel.send(eof=True)
                forwarding = False
        if resized:
            size = resized[-1]
            resized.clear()
            channel.send(resize=size)
        for item in channel.receive(POLL_SECONDS):
            if isinstance(item, Ended):
                if item.exit_code is None:
                    raise ExecFailed(item.problem or "the session ended without an exit code")
                return exit_status(item.exit_code)
            fd, data = item
            stream = err if fd == 2 else out
            stream.write(data)
            stream.flush()


def binary_streams() -> tuple[IO[bytes], IO[bytes]]:
    """stdout and stderr as bytes, unbuffered in effect (each write is flushed)."""
    return sys.stdout.buffer, sys.stderr.buffer


class SessionChannel:
    """An exec session of the manager's relay (kube/sessions.py) as `drive` uses it."""

    def __init__(self, sessions: Sessions, opened: Opened) -> None:
        self._sessions = sessions
        self._opened = opened

    def send(
        self, *, stdin: bytes = b"", eof: bool = False, resize: tuple[int, int] | None = None
    ) -> None:
        self._sessions.send(
            self._opened.session,
            stdin=stdin,
            eof=eof,
            resize=None if resize is None else Resize(rows=resize[0], cols=resize[1]),
        )

    def room(self) -> int:
        return self._sessions.input_room(self._opened.session)

    def receive(self, timeout: float) -> list[Output | Ended]:
        found: list[Output | Ended] = []
        for got in self._sessions.read(timeout):
            found.extend((int(chunk.fd), chunk.raw()) for chunk in got.frame.chunks)
            if got.frame.end is not None:
                found.append(ended(got.frame.end, self._opened))
        return found

    def wake(self) -> None:
        self._sessions.wake()

    def close(self) -> None:
        self._sessions.close(self._opened.session)


def ended(end: StreamEnd, opened: Opened) -> Ended:
    """The session's end as `drive` takes it: an exit code, or why there is none."""
    task, node = opened.task_id, end.node or opened.node
    if end.reason == EndReason.EXITED and end.exit_code is not None:
        return Ended(end.exit_code)
    problems = {
        EndReason.EXITED: f"the exit code of the command in {task} is not known",
        EndReason.NOT_ALLOWED: refusal_sentence(ExecRefusal.NODE_DISALLOWS, task=task, node=node),
        EndReason.NOT_FOUND: f"task {task} has no running container on {node}",
        EndReason.NODE_DOWN: f"node {node} of task {task} went down; the command's end is unknown",
        EndReason.NO_ANSWER: f"worker {node} did not start the command in time",
        EndReason.EXPIRED: "the session expired: kube did not hear from this side in time",
        EndReason.LOST: "the manager lost the session (it restarted); the command was ended",
        EndReason.CLOSED: "the session was closed",
    }
    problem = problems.get(end.reason, f"exec in {task} failed on {node}")
    # a refusal's sentence is the whole story: the worker's error only says it again
    said = end.error if end.reason != EndReason.NOT_ALLOWED else None
    return Ended(None, f"{problem}: {said}" if said else problem)


def run(args: Any, command: list[str], client: Client) -> int:
    """`kube exec`: the command's exit status; kube's own failures raise (KubeError)."""
    if not command:
        raise SettingsError("kube exec: give the command after --, e.g. kube exec web -- sh")
    stdin_fd = sys.stdin.fileno()
    how = plan(args.interactive, args.tty, stdin_fd)
    task_id = client.task_id(args.id)
    params = ExecParams(
        command=command,
        stdin=how.forward_stdin,
        tty=how.tty,
        rows=how.size[0] if how.size else None,
        cols=how.size[1] if how.size else None,
    )
    with client.sessions() as sessions:
        opened = sessions.open(task_id, exec=params)
        out, err = binary_streams()
        return drive(SessionChannel(sessions, opened), how, stdin_fd, out, err)
