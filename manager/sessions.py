"""Streaming sessions through the manager (`kube logs -f`; `kube exec` on the same wire).

The manager opens a session for a client (`query.stream.open`): it picks the task's node
and attempt, sends the worker a `StreamStart` on the node's own queue, and from then on
relays: the worker's frames (on kube.results, as every result) to the client's reply
queue as they came, the client's inputs (`query.stream.input`) to the worker. Frames
bypass the store: relaying one is a lookup and a publish in the batch's replies.

Sessions live in memory only. After a manager restart a client's next input is answered
with a `lost` end (it may open the session again), and a worker's frame for a session
the manager does not know is answered with a close, so the worker stops at once rather
than at its lease's end.

The manager ends a session itself, telling the client why (an end frame) and the worker
(a close): when the worker has not started it in time (`no_answer`), when the node is
down (`node_down`), and when the client stopped renewing it (`expired`: a client killed
with -9 leaves nothing behind).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter

from manager.metrics import SESSIONS
from manager.queries import ask_node
from manager.store import Store
from shared import topology
from shared.bus import Delivery, MessageBus, Outbound
from shared.codec import decode, encode
from shared.models import NodeStatus, Reply
from shared.sessions import (
    EndReason,
    SessionKind,
    SessionOpen,
    StreamEnd,
    StreamFrame,
    StreamInput,
    StreamStart,
)

log = logging.getLogger(__name__)


START_TIMEOUT = 5.0
"""Seconds a worker has to send a session's first frame before the client is told it did
not answer (a worker busy starting containers reads its queue late)."""

MAX_SESSIONS = 1000
"""Sessions open at once; one more is refused (each costs the worker a thread)."""


@dataclass
class Session:
    """One open session, as the manager knows it (monotonic times)."""

    id: str
    reply_to: str
    node: str
    task_id: str
    attempt: int
    lease: float
    opened: float
    heard: float
    started: bool = False
    seq: int = 0  # the last frame relayed
    kind: SessionKind = SessionKind.LOGS


@dataclass(frozen=True)
class Ending:
    """A session the manager ends: the client gets `frame`, the worker a close."""

    session: Session
    frame: StreamFrame


class Sessions:
    """Open sessions by id: pure bookkeeping, no I/O."""

    def __init__(self, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self._open: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._open)

    def get(self, session_id: str) -> Session | None:
        return self._open.get(session_id)

    def open(
        self,
        reply_to: str,
        node: str,
        task_id: str,
        attempt: int,
        lease: float,
        now: float,
        kind: SessionKind = SessionKind.LOGS,
    ) -> Session:
        session = Session(
            uuid.uuid4().hex, reply_to, node, task_id, attempt, lease, now, now, kind=kind
        )
        self._open[session.id] = session
        SESSIONS.set(len(self._open))
        return session

    def forget(self, session_id: str) -> None:
        self._open.pop(session_id, None)
        SESSIONS.set(len(self._open))

    def relayed(self, frame: StreamFrame) -> Session | None:
        """The session a worker's frame belongs to (None: unknown, or from another node);
        forgotten once its end is relayed."""
        session = self._open.get(frame.session)
        if session is None:
            return None
        if session.node != frame.node:
            log.warning(
                "session %s of %s: a frame came from %s, ignored",
                frame.session,
                session.node,
                frame.node,
            )
            return None
        session.started = True
        session.seq = max(session.seq, frame.seq)
        if frame.end is not None:
            self.forget(frame.session)
        return session

    def heard(self, message: StreamInput, reply_to: str | None, now: float) -> Session | None:
        """The session a client's input renews (None: unknown, or not this client's);
        forgotten when it is a close."""
        session = self._open.get(message.session)
        if session is None or session.reply_to != reply_to:
            return None
        session.heard = now
        if message.close:
            self.forget(message.session)
        return session

    def expire(self, now: float, node_ready: Callable[[str], bool], at: datetime) -> list[Ending]:
        """End the sessions whose worker did not start them, whose node is down, or whose
        client went silent; forget them."""
        endings = []
        for session in list(self._open.values()):
            reason: EndReason | None = None
            if not node_ready(session.node):
                reason = EndReason.NODE_DOWN
            elif not session.started and now - session.opened > self.start_timeout:
                reason = EndReason.NO_ANSWER
            elif now - session.heard > session.lease:
                reason = EndReason.EXPIRED
            if reason is not None:
                self.forget(session.id)
                endings.append(Ending(session, end_frame(session, reason, at)))
        return endings


def end_frame(session: Session, reason: EndReason, at: datetime) -> StreamFrame:
    """The frame that tells a client the manager ended its session."""
    return StreamFrame(
        node=session.node,
        at=at,
        session=session.id,
        seq=session.seq + 1,
        end=StreamEnd(reason=reason, node=session.node),
    )


def lost_frame(session_id: str, at: datetime) -> StreamFrame:
    """The answer to an input for a session the manager does not know."""
    return StreamFrame(
        node="manager",
        at=at,
        session=session_id,
        seq=0,
        end=StreamEnd(reason=EndReason.LOST),
    )


SESSION_OPEN = TypeAdapter(SessionOpen)
STREAM_INPUT = TypeAdapter(StreamInput)


class StreamRelay:
    """The manager's handlers of sessions: opens and inputs from clients, frames from
    workers, and the tick that ends the sessions nobody serves."""

    def __init__(
        self,
        store: Store,
        bus: MessageBus,
        send: Callable[[Outbound], None],
        monotonic: Callable[[], float],
        clock: Callable[[], datetime],
        epoch: int = 0,
        on_end: Callable[[Session, StreamEnd], None] | None = None,
    ) -> None:
        self.on_end = on_end  # told of every session's end (kube exec records it)
        self.store = store
        self.bus = bus
        self.send = send  # queues a message with the batch's replies
        self.monotonic = monotonic
        self.clock = clock
        self.epoch = epoch
        self.sessions = Sessions()

    def open(self, delivery: Delivery) -> Reply:
        """`query.stream.open`: start a session, or say why not."""
        request = decode(SESSION_OPEN, delivery.body)
        exec_key = delivery.routing_key == topology.EXEC_OPEN_KEY
        if (request.kind == SessionKind.EXEC) != exec_key:
            return Reply(
                ok=False,
                error=f"an exec session is opened with {topology.EXEC_OPEN_KEY} (an operator's"
                f" key), and only an exec session: not with {delivery.routing_key}",
            )
        if not delivery.reply_to:
            return Reply(
                ok=False, error=f"{topology.STREAM_OPEN_KEY} without reply_to: frames need a queue"
            )
        if request.kind == SessionKind.EXEC and request.exec is None:
            return Reply(ok=False, error="an exec session needs `exec` (the command)")
        if len(self.sessions) >= MAX_SESSIONS:
            return Reply(ok=False, error=f"too many sessions open ({MAX_SESSIONS}); try later")
        task = self.store.task(request.id)
        if task is None:
            return Reply(ok=False, error=f"unknown task {request.id!r}")
        attempt = request.attempt or task.attempt
        if task.node is None or task.attempt == 0:
            return Reply(
                ok=False, error=f"task {task.id} has no container yet ({task.state.value})"
            )
        if attempt != task.attempt:
            return Reply(
                ok=False,
                error=f"task {task.id} is at attempt {task.attempt}, not {attempt}",
            )
        if not self._ready(task.node):
            return Reply(
                ok=False,
                error=f"node {task.node} of task {task.id} is down",
                result={"reason": EndReason.NODE_DOWN.value, "node": task.node},
            )
        session = self.sessions.open(
            delivery.reply_to,
            task.node,
            task.id,
            attempt,
            request.lease,
            self.monotonic(),
            kind=request.kind,
        )
        start = StreamStart(
            epoch=self.epoch,
            session=session.id,
            task_id=task.id,
            attempt=attempt,
            logs=request.logs if request.kind == SessionKind.LOGS else None,
            exec=request.exec if request.kind == SessionKind.EXEC else None,
            lease=request.lease,
            window=request.window,
            binary=request.binary,
        )
        refused = ask_node(self.bus, task.node, encode(start), self.epoch, request.lease)
        if refused is not None:
            self.sessions.forget(session.id)
            return refused
        log.info(
            "session %s: %s of task %s attempt %d on %s",
            session.id,
            request.kind.value,
            task.id,
            attempt,
            task.node,
        )
        result = {"session": session.id, "node": task.node, "task_id": task.id, "attempt": attempt}
        return Reply(ok=True, id=task.id, result=result)

    def input(self, delivery: Delivery) -> Reply | None:
        """`query.stream.input`: pass it on to the worker, or tell the client it is lost."""
        message = decode(STREAM_INPUT, delivery.body)
        known = self.sessions.get(message.session)
        exec_key = delivery.routing_key == topology.EXEC_INPUT_KEY
        if known is not None and (known.kind == SessionKind.EXEC) != exec_key:
            # an exec session's input is an operator's too: a client that learnt its id
            # may not type into it
            return Reply(
                ok=False,
                error=f"input for an exec session is sent with {topology.EXEC_INPUT_KEY},"
                f" and only for one: not with {delivery.routing_key}",
            )
        session = self.sessions.heard(message, delivery.reply_to, self.monotonic())
        if session is None:
            if delivery.reply_to:
                self._to_client(delivery.reply_to, lost_frame(message.session, self.clock()))
            return None
        if message.close:
            self._ended(session, StreamEnd(reason=EndReason.CLOSED, node=session.node))
        forwarded = message.model_copy(update={"epoch": self.epoch})
        self.send(
            self.bus.message(topology.DISPATCH, session.node, encode(forwarded), persistent=False)
        )
        return None

    def frame(self, frame: StreamFrame, body: bytes) -> None:
        """A worker's frame: to its client as it came, or, unknown, a close to the worker."""
        session = self.sessions.relayed(frame)
        if session is not None and frame.end is not None:
            self._ended(session, frame.end)
        if session is not None:
            self.send(
                self.bus.message(
                    "", session.reply_to, body, correlation_id=frame.session, persistent=False
                )
            )
        elif frame.end is None and frame.node != "manager":
            close = StreamInput(epoch=self.epoch, session=frame.session, close=True)
            self.send(
                self.bus.message(topology.DISPATCH, frame.node, encode(close), persistent=False)
            )

    def tick(self) -> None:
        """End the sessions nobody serves (see Sessions.expire)."""
        if not len(self.sessions):
            return
        for ending in self.sessions.expire(self.monotonic(), self._ready, self.clock()):
            session = ending.session
            log.info("session %s: ended by the manager: %s", session.id, ending.frame.end)
            self._to_client(session.reply_to, ending.frame)
            if ending.frame.end is not None:
                self._ended(session, ending.frame.end)
            close = StreamInput(epoch=self.epoch, session=session.id, close=True)
            self.send(
                self.bus.message(topology.DISPATCH, session.node, encode(close), persistent=False)
            )

    def _ended(self, session: Session, end: StreamEnd) -> None:
        if self.on_end is not None:
            self.on_end(session, end)

    def _ready(self, name: str) -> bool:
        node = self.store.node(name)
        return node is not None and node.status == NodeStatus.READY

    def _to_client(self, reply_to: str, frame: StreamFrame) -> None:
        self.send(
            self.bus.message(
                "", reply_to, encode(frame), correlation_id=frame.session, persistent=False
            )
        )
