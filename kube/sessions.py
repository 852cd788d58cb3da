"""Streaming sessions from the client's side: open, read frames, send input, close.

    with client.sessions() as streams:
        opened = streams.open("web.1a2b", logs=LogsParams(follow=True))
        while streams.open_ids:
            for got in streams.read(timeout=1.0):
                for chunk in got.frame.chunks:
                    sys.stdout.buffer.write(chunk.raw())
                if got.frame.end:
                    print("ended:", got.frame.end.reason)

`read` acknowledges what it returns (credit for the worker to send more) and renews the
lease of every open session; a caller that stops reading stops the worker's reading too
(flow control), and one that stops renewing (killed) has its sessions ended by the
manager and the worker within the lease. `close` (and leaving the `with`) ends every
session still open. All of it over one channel of the client's connection, whose
direct reply-to address takes every session's frames (shared/reply_channel.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from shared import topology
from shared.codec import decode, encode
from shared.errors import DecodeError, RequestError, Unanswered
from shared.models import Reply
from shared.reply_channel import ReplyChannel
from shared.sessions import (
    DEFAULT_LEASE,
    DEFAULT_WINDOW,
    INPUT_WINDOW,
    EndReason,
    ExecParams,
    LogsParams,
    Resize,
    SessionKind,
    SessionOpen,
    StreamFrame,
    StreamInput,
    packed,
)
from shared.topology import COMMANDS

log = logging.getLogger(__name__)

FRAME = TypeAdapter(StreamFrame)
REPLY = TypeAdapter(Reply)
OPEN_TIMEOUT = 10.0


class SessionRefused(RequestError):
    """The manager would not open a session; `reason` and `node` say why as data when it
    is one a follower may report and go on from (a node that is down)."""

    def __init__(self, message: str, reason: EndReason | None, node: str | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.node = node


@dataclass(frozen=True)
class Opened:
    """A session the manager opened: where it streams from."""

    session: str
    node: str
    task_id: str
    attempt: int


@dataclass(frozen=True)
class Received:
    """A frame of an open session (its last has `frame.end`)."""

    opened: Opened
    frame: StreamFrame


@dataclass
class _State:
    opened: Opened
    lease: float
    window: int
    kind: SessionKind = SessionKind.LOGS
    seq: int = 0  # the highest frame received
    acked: int = 0  # the highest acknowledged to the worker
    input_sent: int = 0  # bytes of stdin sent
    input_ack: int = 0  # bytes of stdin the command took (the frames' input_ack)
    paced: bool = True  # False once a frame shows a worker that does not say input_ack
    renewed: float = field(default_factory=time.monotonic)


def _keys(kind: SessionKind) -> tuple[str, str]:
    """The routing keys that open a session of this kind and give it input: exec's are an
    operator's (docs/security.md), not queries."""
    if kind == SessionKind.EXEC:
        return topology.EXEC_OPEN_KEY, topology.EXEC_INPUT_KEY
    return topology.STREAM_OPEN_KEY, topology.STREAM_INPUT_KEY


class Sessions:
    """The client's open sessions, over one reply channel."""

    def __init__(self, channel: ReplyChannel, open_timeout: float = OPEN_TIMEOUT) -> None:
        self._channel = channel
        self._open_timeout = open_timeout
        self._sessions: dict[str, _State] = {}
        self._early: list[tuple[str | None, bytes]] = []  # frames read while opening

    @property
    def open_ids(self) -> list[str]:
        return list(self._sessions)

    def open(
        self,
        task_id: str,
        *,
        logs: LogsParams | None = None,
        exec: ExecParams | None = None,
        attempt: int | None = None,
        lease: float = DEFAULT_LEASE,
        window: int = DEFAULT_WINDOW,
    ) -> Opened:
        """Open a session on a task's container (its current attempt unless given):
        RequestError with the manager's reason, Unanswered if no manager answers."""
        kind = SessionKind.EXEC if exec is not None else SessionKind.LOGS
        request = SessionOpen(
            kind=kind,
            id=task_id,
            attempt=attempt,
            logs=(logs or LogsParams()) if exec is None else None,
            exec=exec,
            lease=lease,
            window=window,
            binary=True,  # chunks' bytes exactly (base64 when not UTF-8), stdin paced
        )
        correlation_id = f"open-{time.monotonic_ns()}"
        key = _keys(kind)[0]
        self._channel.publish(COMMANDS, key, encode(request), correlation_id=correlation_id)
        deadline = time.monotonic() + self._open_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unanswered(
                    f"no answer to {key} within {self._open_timeout:g}s: is"
                    " `kube manager` running?",
                    key,
                    self._open_timeout,
                )
            came = self._channel.receive(left)
            for index, (cid, body) in enumerate(came):
                if cid != correlation_id:
                    self._early.append((cid, body))
                    continue
                # frames that came with the reply, after it, are the session's first: kept
                self._early.extend(came[index + 1 :])
                reply = decode(REPLY, body)
                if not reply.ok:
                    raise refusal(reply)
                result = reply.result or {}
                opened = Opened(
                    str(result["session"]),
                    str(result["node"]),
                    str(result["task_id"]),
                    int(result["attempt"]),
                )
                self._sessions[opened.session] = _State(opened, lease, window, kind)
                return opened

    def read(self, timeout: float) -> list[Received]:
        """The frames that came (waiting up to `timeout` for the first), in order; each
        is acknowledged, and every open session renewed when due."""
        found: list[Received] = []
        came = self._early + self._channel.receive(0 if self._early else timeout)
        self._early = []
        for _, body in came:
            try:
                frame = decode(FRAME, body)
            except DecodeError as exc:
                log.warning("ignoring a message that is no frame: %s", exc.reason)
                continue
            state = self._sessions.get(frame.session)
            if state is None:
                continue  # a session closed here: its last frames are of no use
            state.seq = max(state.seq, frame.seq)
            if frame.input_ack is None:
                state.paced = False  # an older worker: it takes input as it comes
            else:
                state.input_ack = max(state.input_ack, frame.input_ack)
            if frame.end is not None:
                del self._sessions[frame.session]
            found.append(Received(state.opened, frame))
        self._renew()
        return found

    def _renew(self) -> None:
        """Acknowledge what was read once a quarter of the window waits, and renew every
        session a third of its lease after its last input."""
        now = time.monotonic()
        for session_id, state in self._sessions.items():
            due = now - state.renewed >= state.lease / 3
            if due or state.seq - state.acked >= max(1, state.window // 4):
                self._send(StreamInput(session=session_id, ack=state.seq), state, now)

    def _send(self, message: StreamInput, state: _State, now: float) -> None:
        self._channel.publish(COMMANDS, _keys(state.kind)[1], encode(message))
        state.acked = max(state.acked, message.ack or 0)
        state.renewed = now

    def input_room(self, session_id: str) -> int:
        """Bytes of stdin the session takes now: INPUT_WINDOW beyond what its command
        took (input flow control); 0 once it is full, until frames say it took more."""
        state = self._sessions.get(session_id)
        if state is None:
            return 0
        if not state.paced:
            return INPUT_WINDOW
        return max(0, INPUT_WINDOW - (state.input_sent - state.input_ack))

    def send(
        self,
        session_id: str,
        *,
        stdin: bytes = b"",
        eof: bool = False,
        resize: Resize | None = None,
        signal: str | None = None,
    ) -> None:
        """Input for an open session (exec): stdin (any bytes), its end, a terminal size,
        a signal. A caller keeps the stdin it sends within input_room()."""
        state = self._sessions[session_id]
        state.input_sent += len(stdin)
        text, encoding = packed(stdin)
        message = StreamInput(
            session=session_id,
            ack=state.seq,
            stdin=text or None,
            encoding=encoding,
            eof=eof,
            resize=resize,
            signal=signal,
        )
        self._send(message, state, time.monotonic())

    def close(self, session_id: str) -> None:
        """End a session: the worker stops reading at once."""
        state = self._sessions.pop(session_id, None)
        if state is not None:
            self._channel.publish(
                COMMANDS,
                _keys(state.kind)[1],
                encode(StreamInput(session=session_id, close=True)),
            )

    def wake(self) -> None:
        """Make a read() in progress return now; the one call safe from another thread."""
        self._channel.wake()

    def close_all(self) -> None:
        """End every open session and the channel (nothing is left behind)."""
        try:
            for session_id in list(self._sessions):
                self.close(session_id)
        finally:
            self._channel.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


def refusal(reply: Reply) -> SessionRefused:
    """The manager's refusal, with its reason as data when it gave one."""
    found = reply.result if isinstance(reply.result, dict) else {}
    try:
        reason: EndReason | None = EndReason(str(found.get("reason")))
    except ValueError:
        reason = None
    node = found.get("node")
    message = reply.error or "the manager refused the session"
    return SessionRefused(message, reason, node if isinstance(node, str) else None)
