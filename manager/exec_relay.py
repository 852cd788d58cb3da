"""`kube exec` through the manager: who may, and the record of each, around the session
relay (manager/sessions.py) that carries its bytes.

`exec.open` is an operator's routing key (the broker's topic permissions) and the
manager checks its `user_id` too (manager/auth.py), so a broker without topic
permissions does not open exec to every client. Each exec is recorded in the task's
history and published as `task.exec` (manager/execs.py): when it is refused here, when it
starts, and when it ends, with its exit code, or why it has none (the worker's policy
refused it, its node went down, its client closed or vanished).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import TypeAdapter

from manager.auth import WorkerAuth, command_sender_allowed
from manager.effects import Decision
from manager.execs import recorded
from manager.sessions import Session, StreamRelay
from manager.store import Store
from shared import topology
from shared.bus import Delivery
from shared.codec import decode
from shared.execs import ExecPhase, ExecRecord, ExecRefusal, refusal_sentence
from shared.models import Reply
from shared.sessions import EndReason, SessionOpen, StreamEnd

log = logging.getLogger(__name__)

SESSION_OPEN = TypeAdapter(SessionOpen)


class ExecRelay:
    """Opens exec sessions for operators and records each one's start and end."""

    def __init__(
        self,
        streams: StreamRelay,
        store: Store,
        auth: WorkerAuth,
        record: Callable[[Decision], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.streams = streams
        self.store = store
        self.auth = auth
        self.record = record  # the manager's commit: the store, then kube.events
        self.clock = clock
        self._started: dict[str, ExecRecord] = {}  # by session id, until it ends
        streams.on_end = self.ended

    def open(self, delivery: Delivery) -> Reply:
        """`exec.open`: an operator's exec session, recorded; anyone else's refused, recorded."""
        request = decode(SESSION_OPEN, delivery.body)
        task = self.store.task(request.id)
        user = delivery.user_id
        refused = command_sender_allowed(topology.EXEC_OPEN_KEY, user, self.auth)
        if refused is not None or request.exec is None:
            if request.exec is None:
                return self.streams.open(delivery)  # says what is missing
            log.warning("exec in %s refused: %s", request.id, refused)
            if task is not None and task.attempt > 0:
                denied = ExecRecord(
                    session="refused",
                    phase=ExecPhase.REFUSED,
                    user=user,
                    command=tuple(request.exec.command),
                    tty=request.exec.tty,
                    node=task.node,
                    refusal=ExecRefusal.NOT_PERMITTED,
                )
                self.record(recorded(task, task.attempt, denied, self.clock()))
            sentence = refusal_sentence(ExecRefusal.NOT_PERMITTED, task=request.id, user=user)
            return Reply(ok=False, error=sentence)
        reply = self.streams.open(delivery)
        if not reply.ok or task is None:
            return reply
        result = reply.result or {}
        started = ExecRecord(
            session=str(result["session"]),
            phase=ExecPhase.STARTED,
            user=user,
            command=tuple(request.exec.command),
            tty=request.exec.tty,
            node=str(result["node"]),
        )
        self._started[started.session] = started
        self.record(recorded(task, int(result["attempt"]), started, self.clock()))
        return reply

    def ended(self, session: Session, end: StreamEnd) -> None:
        """A session ended (told by the relay): record how, if it was an exec."""
        started = self._started.pop(session.id, None)
        task = self.store.task(session.task_id)
        if started is None or task is None:
            return  # a logs session, or a task removed meanwhile
        if end.reason == EndReason.NOT_ALLOWED:
            done = started.model_copy(
                update={"phase": ExecPhase.REFUSED, "refusal": ExecRefusal.NODE_DISALLOWS}
            )
        else:
            detail = None if end.reason == EndReason.EXITED else end.reason.value
            if end.error:
                detail = f"{detail}: {end.error}" if detail else end.error
            done = started.model_copy(
                update={"phase": ExecPhase.ENDED, "exit_code": end.exit_code, "detail": detail}
            )
        self.record(recorded(task, session.attempt, done, self.clock()))
