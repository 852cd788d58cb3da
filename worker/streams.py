"""The worker's side of streaming sessions: a thread per session reads the engine, the bus
thread sends what it read as numbered frames (shared/sessions.py).

The reader thread is the only one that waits on the engine or on the client: it stops
reading when its buffer is full or when `window` frames are unacknowledged, so a slow
client holds up only its own session, never the bus thread (heartbeats, updates,
dispatches) nor the engine pool. A session whose client stops renewing it (`lease`) is
ended here, on the worker's clock; so is every session when the worker stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from shared.errors import NoSuchContainer, RuntimeFailure
from shared.sessions import (
    Chunk,
    EndReason,
    Fd,
    LogsParams,
    StreamEnd,
    StreamFrame,
    StreamInput,
    StreamStart,
    packed,
)
from worker.exec_source import ExecNotAllowed
from worker.runtime.base import LogLine, Runtime

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.05
"""Seconds between the frames of a busy session: output is batched that long at most."""

FRAME_BYTES = 64 * 1024
"""Characters of output one frame carries at most (a window of 32 holds 2 MiB)."""

BUFFER_BYTES = 256 * 1024
"""Characters a session reads ahead of what it has sent before its reader waits."""

PIECE = 16 * 1024
"""A longer line is sent in pieces of this many bytes."""

THREAD_PREFIX = "kube-stream-"
"""Every session's reader thread is named so (counted by worker/metrics.py)."""


class Source(Protocol):
    """What a session streams from: output as LogLines until it ends or is closed.

    A logs session wraps the runtime's LogFollow; an exec session (kube exec) brings its
    own, which also takes the client's input."""

    def __iter__(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...

    def send(self, message: StreamInput) -> None:
        """stdin, eof, resize or signal from the client (bus thread: must not block)."""
        ...

    def exit_code(self) -> int | None:
        """Once the output has ended: the exit code of what ran, if known."""
        ...

    def listen(self, wake: Callable[[], None]) -> None:
        """Call wake (from any thread) when what input_taken() says changed."""
        ...

    def input_taken(self) -> int | None:
        """Bytes of stdin what runs has taken (exec), None where there is no input."""
        ...


class LogsSource:
    """A container's output as the runtime follows it; input is ignored."""

    def __init__(self, runtime: Runtime, start: StreamStart) -> None:
        params = start.logs or LogsParams()
        self._follow = runtime.follow_logs(start.task_id, start.attempt, params)

    def __iter__(self) -> Iterator[LogLine]:
        return iter(self._follow)

    def close(self) -> None:
        self._follow.close()

    def send(self, message: StreamInput) -> None:
        return None

    def exit_code(self) -> int | None:
        return None

    def listen(self, wake: Callable[[], None]) -> None:
        return None

    def input_taken(self) -> int | None:
        return None


Opener = Callable[[StreamStart], Source]
"""Opens a session's source (in its reader thread: it may call the engine)."""


def opener(runtime: Runtime, exec_opener: Opener | None = None) -> Opener:
    """Opens a logs session's source on the runtime, an exec session's with `exec_opener`."""

    def open_source(start: StreamStart) -> Source:
        if start.exec is not None:
            if exec_opener is None:
                raise RuntimeFailure(f"this worker cannot run exec sessions ({start.task_id})")
            return exec_opener(start)
        return LogsSource(runtime, start)

    return open_source


class Session:
    """One session: its reader thread, its buffer, its credit and its lease."""

    def __init__(
        self,
        node: str,
        start: StreamStart,
        opener: Opener,
        wake: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.start = start
        self.id = start.session
        self._opener = opener
        self._wake = wake  # asks the bus thread to flush soon (from the reader thread)
        self._monotonic = monotonic
        self._heard = monotonic()
        self._cond = threading.Condition()
        self._pending: list[Chunk] = []
        self._pending_bytes = 0
        self._seq = 0  # frames sent
        self._acked = 0
        self._end: StreamEnd | None = None
        self._closed = False
        self._source: Source | None = None
        self._early: list[StreamInput] = []  # input that came before the source opened
        self._input_told: int | None = None  # the input_ack of the last frame sent
        self.done = False  # its last frame was sent
        self.thread = threading.Thread(
            target=self._read, name=f"{THREAD_PREFIX}{self.id[:12]}", daemon=True
        )

    # -- the reader thread -----------------------------------------------------------

    def _read(self) -> None:
        end: StreamEnd
        try:
            source = self._opener(self.start)
            with self._cond:
                if self._closed:
                    source.close()
                    return
                self._source = source
                source.listen(self._wake)
                for message in self._early:  # in order, before any later input
                    source.send(message)
                self._early.clear()
            for line in source:
                if not self._put(line):
                    break
            code = source.exit_code()
            following = self.start.logs is None or self.start.logs.follow
            reason = EndReason.EXITED if following else EndReason.DONE
            end = StreamEnd(reason=reason, node=self.node, exit_code=code)
        except ExecNotAllowed as exc:
            end = StreamEnd(reason=EndReason.NOT_ALLOWED, node=self.node, error=str(exc))
        except NoSuchContainer as exc:
            end = StreamEnd(reason=EndReason.NOT_FOUND, node=self.node, error=str(exc))
        except RuntimeFailure as exc:
            end = StreamEnd(reason=EndReason.FAILED, node=self.node, error=str(exc))
        except Exception as exc:  # the client hears why its stream stopped
            log.exception("session %s of task %s: reading failed", self.id, self.start.task_id)
            end = StreamEnd(reason=EndReason.FAILED, node=self.node, error=repr(exc))
        with self._cond:
            if self._end is None:
                self._end = end
        self._wake()

    def _put(self, line: LogLine) -> bool:
        """Buffer a line, once there is room and credit; False once the session is closed."""
        fd = Fd.STDERR if line.fd == 2 else Fd.STDOUT
        with self._cond:
            for start in range(0, max(len(line.data), 1), PIECE):
                text, encoding = packed(line.data[start : start + PIECE], self.start.binary)
                while not self._closed and (
                    self._pending_bytes >= BUFFER_BYTES
                    or self._seq - self._acked >= self.start.window
                ):
                    self._cond.wait(1.0)
                if self._closed:
                    return False
                wake = not self._pending
                self._pending.append(Chunk(fd=fd, at=line.at, data=text, encoding=encoding))
                self._pending_bytes += len(text)
            if wake:
                self._wake()
        return True

    # -- the bus thread ---------------------------------------------------------------

    def frames(self, now: float) -> list[StreamFrame]:
        """The frames to send now: the first one at once (even empty), then what was read
        (within credit), then the end once everything before it went."""
        with self._cond:
            if self._end is None and now - self._heard > self.start.lease:
                self._end = StreamEnd(reason=EndReason.EXPIRED, node=self.node)
                self._close_locked()
            found: list[StreamFrame] = []
            taken = self._input_taken()
            while (
                (self._seq - self._acked < self.start.window)
                and (self._pending or taken != self._input_told)
                or (self._seq == 0)
            ):
                found.append(self._frame(self._take(), taken=taken))
            if self._end is not None and not self._pending and not self.done:
                found.append(self._frame([], self._end, taken))
                self.done = True
            if found:
                self._cond.notify_all()
            return found

    def _input_taken(self) -> int | None:
        """What the frames tell of input: an exec session's always say it to a client
        that paces its stdin by it (`binary`), a logs session's never."""
        if self.start.exec is None or not self.start.binary:
            return None
        return (self._source.input_taken() if self._source is not None else None) or 0

    def _take(self) -> list[Chunk]:
        taken: list[Chunk] = []
        size = 0
        while self._pending and size + len(self._pending[0].data) <= FRAME_BYTES:
            chunk = self._pending.pop(0)
            size += len(chunk.data)
            taken.append(chunk)
        self._pending_bytes -= size
        return taken

    def _frame(
        self, chunks: list[Chunk], end: StreamEnd | None = None, taken: int | None = None
    ) -> StreamFrame:
        self._seq += 1
        self._input_told = taken
        return StreamFrame(
            node=self.node,
            at=datetime.now(UTC),
            session=self.id,
            seq=self._seq,
            chunks=chunks,
            end=end,
            input_ack=taken,
        )

    def heard(self, message: StreamInput) -> None:
        """The client spoke: renew the lease, take its credit, pass on its input."""
        with self._cond:
            self._heard = self._monotonic()
            if message.ack is not None and message.ack > self._acked:
                self._acked = min(message.ack, self._seq)
                self._cond.notify_all()
            if not message.close and (
                message.stdin is not None or message.eof or message.resize or message.signal
            ):
                # under the lock: the reader thread may be handing the early input over
                if self._source is None:
                    self._early.append(message)
                else:
                    self._source.send(message)
        if message.close:
            self.close(EndReason.CLOSED)

    def close(self, reason: EndReason) -> None:
        """End the session: the reader stops at once (its engine read is cut)."""
        with self._cond:
            if self._end is None:
                self._end = StreamEnd(reason=reason, node=self.node)
            self._close_locked()

    def _close_locked(self) -> None:
        self._closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self._cond.notify_all()
        if self._source is not None:
            self._source.close()


class Streams:
    """The sessions of one worker, by id; everything here runs on the bus thread."""

    def __init__(
        self,
        node: str,
        opener: Opener,
        send: Callable[[StreamFrame], None],
        wake: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._opener = opener
        self._send = send
        self._wake = wake
        self._monotonic = monotonic
        self.sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def start(self, start: StreamStart) -> None:
        """Start a session (a start for one already open is a redelivery: ignored)."""
        if start.session in self.sessions:
            return
        session = Session(self.node, start, self._opener, self._wake, self._monotonic)
        self.sessions[start.session] = session
        log.info(
            "worker %s: session %s streams task %s attempt %d",
            self.node,
            start.session,
            start.task_id,
            start.attempt,
        )
        session.thread.start()
        self.flush()

    def heard(self, message: StreamInput) -> None:
        session = self.sessions.get(message.session)
        if session is None:
            if not message.close:  # this worker restarted since: its client opens it again
                log.info("worker %s: input for unknown session %s", self.node, message.session)
                end = StreamEnd(reason=EndReason.LOST, node=self.node)
                self._send(
                    StreamFrame(
                        node=self.node,
                        at=datetime.now(UTC),
                        session=message.session,
                        seq=0,
                        end=end,
                    )
                )
            return
        session.heard(message)
        self.flush()

    def flush(self) -> None:
        """Send each session's frames; forget the sessions that sent their last."""
        now = self._monotonic()
        for session_id, session in list(self.sessions.items()):
            for frame in session.frames(now):
                self._send(frame)
                if frame.end is not None:
                    log.info(
                        "worker %s: session %s ended: %s",
                        self.node,
                        session_id,
                        frame.end.reason.value,
                    )
            if session.done:
                del self.sessions[session_id]

    def close(self) -> None:
        """The worker stops: end every session and wait (briefly) for its reader."""
        for session in self.sessions.values():
            session.close(EndReason.FAILED)
        for session in self.sessions.values():
            session.thread.join(timeout=2.0)
        self.sessions.clear()


def live_readers() -> int:
    """Reader threads alive in this process (a metric: nothing is left behind)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX))
