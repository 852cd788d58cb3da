"""`kube exec` on the worker: an exec session's source (worker/streams.py) over the runtime.

The worker's policy is asked first: without `--allow-exec` (policy key `allow_exec`) the
session ends at once with the reason `not_allowed`, and nothing runs. Otherwise the
command starts in the attempt's container; its output is streamed as the session's
frames, and the client's input (stdin, its end, a window size, a signal) goes to it.

Output is cut only between whole UTF-8 characters: a frame carries text, and a character
split over two reads would otherwise come out as two replacement characters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from shared.errors import RuntimeFailure
from shared.execs import ExecRefusal
from shared.sessions import StreamInput, StreamStart
from worker.policy import WorkerPolicy
from worker.runtime.base import ExecOptions, ExecSession, LogLine, OutputFd, Runtime

log = logging.getLogger(__name__)

EXIT_CODE_WAIT = 5.0
"""Seconds the engine may take, once the output ended, to know the exit code."""


class ExecNotAllowed(RuntimeFailure):
    """This worker's policy refuses `kube exec` (reason as data: `refusal`)."""

    def __init__(self, node: str, task_id: str) -> None:
        super().__init__(f"exec in {task_id} refused by the security policy of {node}")
        self.refusal = ExecRefusal.NODE_DISALLOWS


def complete_utf8(data: bytes) -> int:
    """How many leading bytes of data end on a whole UTF-8 character (the rest may be the
    start of one that the next read completes)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: its character starts further back
        if byte < 0x80:
            return len(data)
        need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
        return len(data) - back if back < need else len(data)
    return len(data)  # continuation bytes only: not UTF-8 anyway, pass them on


class ExecSource:
    """One command running in a container, as a session's source."""

    def __init__(self, session: ExecSession, task_id: str) -> None:
        self._session = session
        self._task_id = task_id
        self._closed = False

    def __iter__(self) -> Iterator[LogLine]:
        held = {OutputFd.STDOUT: b"", OutputFd.STDERR: b""}
        while (chunk := self._session.read()) is not None:
            fd, data = chunk
            data = held[fd] + data
            whole = complete_utf8(data)
            held[fd] = data[whole:]
            if whole:
                yield LogLine(fd=int(fd), at=None, data=data[:whole])
        for fd, rest in held.items():
            if rest:
                yield LogLine(fd=int(fd), at=None, data=rest)

    def send(self, message: StreamInput) -> None:
        """stdin, its end, a window size or a signal (on the bus thread: quick calls)."""
        try:
            if message.resize is not None:
                self._session.resize(message.resize.rows, message.resize.cols)
            if message.stdin:
                self._session.write(message.stdin.encode())
            if message.signal is not None:
                self._session.signal(message.signal.removeprefix("SIG"))
            if message.eof:
                self._session.close_input()
        except RuntimeFailure as exc:  # the command ended meanwhile: its end frame says so
            log.info("exec in %s: input not delivered: %s", self._task_id, exc)

    def close(self) -> None:
        self._closed = True
        self._session.close()

    def exit_code(self) -> int | None:
        """The command's exit code: its output ended, so it has or is about to."""
        deadline = time.monotonic() + EXIT_CODE_WAIT
        while (code := self._session.exit_code()) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return code


def exec_opener(
    runtime: Runtime, policy: WorkerPolicy, node: str
) -> Callable[[StreamStart], ExecSource]:
    """Opens exec sessions on the runtime, when the policy allows them."""

    def open_exec(start: StreamStart) -> ExecSource:
        if policy.exec_refusal() is not None:
            raise ExecNotAllowed(node, start.task_id)
        params = start.exec
        assert params is not None  # the opener is called for exec sessions only
        options = ExecOptions(
            command=tuple(params.command),
            tty=params.tty,
            stdin=params.stdin,
            rows=params.rows or 24,
            cols=params.cols or 80,
        )
        session = runtime.open_exec(start.task_id, start.attempt, options)
        log.info(
            "node %s: exec in task %s attempt %d: %s",
            node,
            start.task_id,
            start.attempt,
            " ".join(params.command),
        )
        return ExecSource(session, start.task_id)

    return open_exec
