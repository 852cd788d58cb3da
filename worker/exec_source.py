"""`kube exec` on the worker: an exec session's source (worker/streams.py) over the runtime.

The worker's policy is asked first: without `--allow-exec` (policy key `allow_exec`) the
session ends at once with the reason `not_allowed`, and nothing runs. Otherwise the
command starts in the attempt's container; its output is streamed as the session's
frames, and the client's input (stdin, its end, a window size, a signal) goes to it.

Input never waits on the bus thread: stdin (and its end) is written by a thread of the
session's own from a bounded buffer, and so are window sizes and signals (by another,
so that a signal still reaches a command that stopped reading its stdin). What the
command took is counted and told to the client in each frame (`input_ack`), which keeps
at most `INPUT_WINDOW` bytes in flight beyond it (docs/wire-contract.md).

Output is cut only between whole UTF-8 characters: a chunk of UTF-8 goes as text, and a
character split over two reads would otherwise send both pieces in base64.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from shared.errors import RuntimeFailure
from shared.execs import ExecRefusal
from shared.sessions import INPUT_BUFFER_MAX, StreamInput, StreamStart
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


CLOSE_WAIT = 10.0
"""Seconds the output's reader waits, once closed, for the command to be killed."""

WRITER_PREFIX = "kube-exec-input-"
"""The threads that give a command its input are named so (they end with the session)."""


class InOrder:
    """Runs calls in order on a thread of its own (started with the first call), so the
    caller never waits on them; close() ends the thread after the call it is in."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, call: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._calls.append(call)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._calls.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._calls and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                call = self._calls.popleft()
            call()


class ExecSource:
    """One command running in a container, as a session's source."""

    def __init__(self, session: ExecSession, task_id: str, name: str = "") -> None:
        self._session = session
        self._task_id = task_id
        self._closed = False
        self._input = InOrder(f"{WRITER_PREFIX}{name}")  # stdin and its end
        self._control = InOrder(f"{WRITER_PREFIX}{name}-control")  # sizes and signals
        self._lock = threading.Lock()
        self._held = 0  # bytes of stdin given to the input thread, not yet written
        self._taken = 0  # bytes of stdin the command took
        self._overflow: str | None = None
        self._wake: Callable[[], None] = lambda: None
        self._name = f"{WRITER_PREFIX}{name}"
        self._closer: threading.Thread | None = None

    def __iter__(self) -> Iterator[LogLine]:
        held = {OutputFd.STDOUT: b"", OutputFd.STDERR: b""}
        try:
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
        finally:
            self._stop_input()
            if self._closer is not None:
                self._closer.join(CLOSE_WAIT)
        if self._overflow is not None:
            raise RuntimeFailure(self._overflow)

    def listen(self, wake: Callable[[], None]) -> None:
        """Call wake (from the input thread) whenever the command took input."""
        self._wake = wake

    def input_taken(self) -> int:
        """Bytes of stdin the command has taken so far."""
        with self._lock:
            return self._taken

    def send(self, message: StreamInput) -> None:
        """stdin, its end, a window size or a signal: handed to the session's own threads
        (this runs on the bus thread and never waits on the command)."""
        if message.resize is not None:
            rows, cols = message.resize.rows, message.resize.cols
            self._control.put(lambda: self._session.resize(rows, cols))
        if message.signal is not None:
            name = message.signal.removeprefix("SIG")
            self._control.put(lambda: self._deliver(lambda: self._session.signal(name)))
        if message.stdin:
            data = message.stdin_bytes()
            with self._lock:
                over = self._held + len(data) > INPUT_BUFFER_MAX
                if not over:
                    self._held += len(data)
            if over:
                self._overflow = (
                    f"exec in {self._task_id}: the client sent more than"
                    f" {INPUT_BUFFER_MAX} bytes of stdin the command did not take"
                )
                log.warning("%s: ending it", self._overflow)
                self.close()
                return
            self._input.put(lambda: self._write(data))
        if message.eof:
            self._input.put(lambda: self._deliver(self._session.close_input))

    def _write(self, data: bytes) -> None:
        """On the input thread: may wait as long as the command does not read."""
        self._deliver(lambda: self._session.write(data))
        with self._lock:
            self._held -= len(data)
            self._taken += len(data)
        self._wake()

    def _deliver(self, call: Callable[[], None]) -> None:
        try:
            call()
        except RuntimeFailure as exc:  # the command ended meanwhile: its end frame says so
            log.info("exec in %s: input not delivered: %s", self._task_id, exc)

    def _stop_input(self) -> None:
        self._input.close()
        self._control.close()

    def close(self) -> None:
        """End the command: its input threads stop, and a thread of its own kills it and
        cuts the connection (engine calls: the caller, the bus thread, does not wait; the
        output's reader waits for it before it ends)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop_input()
        self._closer = threading.Thread(
            target=self._session.close, name=f"{self._name}-close", daemon=True
        )
        self._closer.start()

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
        return ExecSource(session, start.task_id, start.session[:12])

    return open_exec
