"""`kube logs` through the manager: the requests sent to workers that await their answer.

A client asks the manager (`query.logs`); the manager sends a `LogsRequest` on the node's
own dispatch queue, and the worker answers with a `LogsReply` on kube.results. Both legs
use only what each broker user may touch (a worker can neither bind a queue of its own
to kube.dispatch nor write to a client's reply queue), so `kube logs` works with the
least-privilege users of deploy/rabbitmq. The manager keeps who asked, in memory only:
a request that outlives a manager restart is answered by nobody, and its asker times out.

This module is bookkeeping only; the manager does the publishing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from manager.kept_output import instead
from shared.kept import KeptLogs
from shared.messages import LogsReply, LogsRequest
from shared.models import Reply

log = logging.getLogger(__name__)

LOGS_TIMEOUT = 8.0
"""Seconds the manager waits for a worker's answer; under the client's default of 10 s,
so the asker hears why there is no output rather than only that nobody answered."""


@dataclass(frozen=True)
class Asker:
    """Where the answer to one logs request goes."""

    reply_to: str
    correlation_id: str | None
    node: str
    task_id: str
    deadline: float  # on the manager's monotonic clock
    tail: int | None = None
    fallback: KeptLogs | None = None  # shown when the worker has no output to give


@dataclass(frozen=True)
class Answer:
    """A reply for an asker, to publish to its reply queue."""

    reply_to: str
    correlation_id: str | None
    reply: Reply


class LogRelay:
    """Logs requests in flight, by request id."""

    def __init__(self, timeout: float = LOGS_TIMEOUT) -> None:
        self.timeout = timeout
        self._pending: dict[str, Asker] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def request(
        self,
        *,
        reply_to: str,
        correlation_id: str | None,
        node: str,
        task_id: str,
        attempt: int,
        tail: int | None,
        now: float,
        fallback: KeptLogs | None = None,
    ) -> LogsRequest:
        """Remember the asker; return the request to send to the worker on `node`.

        `now` is the manager's monotonic clock. The request carries its time to live, not
        a time: the manager publishes it with that expiration, which the broker enforces
        on its own clock (no two machines' clocks are compared)."""
        request_id = uuid.uuid4().hex
        self._pending[request_id] = Asker(
            reply_to, correlation_id, node, task_id, now + self.timeout, tail, fallback
        )
        return LogsRequest(
            request_id=request_id, task_id=task_id, attempt=attempt, tail=tail, ttl=self.timeout
        )

    def forget(self, request_id: str) -> None:
        """The request could not be sent: nobody will answer it."""
        self._pending.pop(request_id, None)

    def answer(self, reply: LogsReply) -> Answer | None:
        """The worker's answer for its asker; None when nobody waits for it any more."""
        asker = self._pending.get(reply.request_id)
        if asker is None:
            log.info("logs of %s from %s came after the asker gave up", reply.task_id, reply.node)
            return None
        if asker.node != reply.node or asker.task_id != reply.task_id:
            log.warning(
                "logs reply %s names %s on %s, but was asked of %s on %s; ignored",
                reply.request_id,
                reply.task_id,
                reply.node,
                asker.task_id,
                asker.node,
            )
            return None
        del self._pending[reply.request_id]
        if reply.error is not None:
            result = instead(asker.fallback, asker.tail, reply.error, reply.task_id)
        else:
            result = Reply(ok=True, id=reply.task_id, result=reply.output or "")
        return Answer(asker.reply_to, asker.correlation_id, result)

    def expire(self, now: float) -> list[Answer]:
        """Tell the askers whose worker did not answer in time (by the monotonic `now`),
        and forget them."""
        late = [rid for rid, asker in self._pending.items() if asker.deadline <= now]
        answers = []
        for request_id in late:
            asker = self._pending.pop(request_id)
            error = (
                f"worker {asker.node} did not answer the logs request for {asker.task_id} "
                f"within {self.timeout:g}s"
            )
            log.warning("%s", error)
            reply = instead(asker.fallback, asker.tail, error)
            answers.append(Answer(asker.reply_to, asker.correlation_id, reply))
        return answers
