"""Answers to the read-only requests of the CLI and clients (`query.*` on kube.commands).

Replies are not persistent and queries change nothing, so nothing here needs the outbox.
`query.logs` is sent on to the worker that holds the container, as a `LogsRequest` on its
dispatch queue; the manager relays the worker's answer (`manager.log_relay`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, TypeAdapter

from manager import kept_output
from manager.endpoints import serving
from manager.epochs import stamp
from manager.log_relay import LogRelay
from manager.orphans import Book, Refused, listing, refusal
from manager.secret_key import SecretKey
from manager.secrets import NO_KEY
from manager.store import Store
from shared import topology
from shared.bus import Delivery, MessageBus
from shared.codec import decode, encode
from shared.errors import DecodeError, UnroutableError
from shared.files import FileKind, SealingKey
from shared.messages import EndpointsQuery, ListQuery, LogsQuery, Orphan, TaskQuery
from shared.models import MAX_BODY_BYTES, JobRow, NodeStatus, Reply, ServiceEndpoints

log = logging.getLogger(__name__)

LIST = TypeAdapter(ListQuery)
TASK = TypeAdapter(TaskQuery)
LOGS = TypeAdapter(LogsQuery)
ENDPOINTS = TypeAdapter(EndpointsQuery)


class Queries:
    """Serves `query.tasks`, `query.task`, `query.nodes`, `query.services`,
    `query.endpoints`, `query.logs`, `query.orphans`, `query.managers`, `query.secrets`,
    `query.configs`, `query.sealing-key`, `query.jobs` and `query.volumes`."""

    def __init__(
        self,
        store: Store,
        bus: MessageBus,
        relay: LogRelay,
        monotonic: Callable[[], float],
        clock: Callable[[], datetime],
        orphans: Book | None = None,
        epoch: int = 0,
    ) -> None:
        self.store = store
        self.epoch = epoch  # the leader's, on the logs requests it sends (manager/epochs.py)
        self.bus = bus
        self.relay = relay
        self.monotonic = monotonic  # the relay's deadlines are on the monotonic clock
        self.clock = clock  # wall time, for the `at` of what it answers
        self.orphans = orphans or Book()  # what the nodes last reported (manager/orphans.py)
        self.handlers: dict[str, Callable[[Delivery], Reply | None]] = {
            "query.tasks": self.tasks,
            "query.task": self.task,
            "query.nodes": self.nodes,
            "query.services": self.services,
            "query.endpoints": self.endpoints,
            "query.logs": self.logs,
            "query.orphans": self.orphan_list,
            "query.managers": self.managers,
            "query.jobs": self.jobs,
            "query.secrets": partial(self.files, FileKind.SECRET),
            "query.configs": partial(self.files, FileKind.CONFIG),
            "query.sealing-key": self.sealing_key,
            "query.volumes": self.volumes,
        }
        self.secret_key: SecretKey | None = None  # set by the manager (manager/secret_key.py)

    def on_query(self, delivery: Delivery) -> None:
        """Answer a query; one that is malformed (an unknown key, a bad body) is answered
        and dead-lettered with the reason, as a bad command is."""
        handler = self.handlers.get(delivery.routing_key)
        bad: str | None = None
        reply: Reply | None
        if handler is None:
            known = ", ".join(self.handlers)
            bad = f"unknown query {delivery.routing_key!r}; known: {known}"
            reply = Reply(ok=False, error=bad)
        else:
            try:
                reply = handler(delivery)
            except DecodeError as exc:
                bad = f"invalid {delivery.routing_key}: {exc.reason}"
                reply = Reply(ok=False, error=bad)
        if reply is not None:
            if not reply.ok:
                log.info("query %s refused: %s", delivery.routing_key, reply.error)
            self.bus.reply(delivery, encode(reply))
        if bad is not None:
            self.bus.dead_letter(delivery, bad)
        else:
            self.bus.ack(delivery)

    def tasks(self, delivery: Delivery) -> Reply:
        query = _list(delivery)
        return page(self.store.tasks_page(query.after, query.limit + 1), query.limit)

    def task(self, delivery: Delivery) -> Reply:
        query = decode(TASK, delivery.body)
        task = self.store.task(query.id)
        if task is None:
            return Reply(ok=False, error=f"unknown task {query.id!r}")
        events = self.store.events(task.id)
        attempts = kept_output.attempts(task, events, self.store.kept_exit_codes(task.id))
        result = {
            "task": _dump(task),
            "events": [_dump(event) for event in events],
            "attempts": [_dump(attempt) for attempt in attempts],
        }
        return Reply(ok=True, id=task.id, result=result)

    def nodes(self, delivery: Delivery) -> Reply:
        query = _list(delivery)
        after = [
            (n.name, n) for n in self.store.nodes() if query.after is None or n.name > query.after
        ]
        return page(after[: query.limit + 1], query.limit)

    def volumes(self, delivery: Delivery) -> Reply:
        """The volumes by name, each with its node and the tasks that name it."""
        query = _list(delivery)
        after = [
            (v.name, v) for v in self.store.volumes() if query.after is None or v.name > query.after
        ]
        return page(after[: query.limit + 1], query.limit)

    def managers(self, delivery: Delivery) -> Reply:
        """The managers seen in the store (manager/store/lease.py): a handful, one page."""
        return Reply(ok=True, result=[_dump(info) for info in self.store.managers()])

    def files(self, kind: FileKind, delivery: Delivery) -> Reply:
        """Secrets or configs: names, versions, sizes and times; never a value."""
        return Reply(ok=True, result=[_dump(record) for record in self.store.files(kind)])

    def sealing_key(self, delivery: Delivery) -> Reply:
        """Where a client seals a value for this manager (shared/sealing.py)."""
        if self.secret_key is None:
            return Reply(ok=False, error=NO_KEY)
        public = base64.b64encode(self.secret_key.public_key()).decode()
        return Reply(
            ok=True, result=_dump(SealingKey(public_key=public, key_id=self.secret_key.key_id))
        )

    def services(self, delivery: Delivery) -> Reply:
        query = _list(delivery)
        return page(self.store.services_page(query.after, query.limit + 1), query.limit)

    def jobs(self, delivery: Delivery) -> Reply:
        """The scheduled jobs, each with the state of its newest run."""
        query = _list(delivery)
        rows = self.store.jobs_page(query.after, query.limit + 1)
        runs = self.store.tasks_by_id(job.last_run for _, job in rows if job.last_run)
        return page(
            [
                (name, JobRow(job=job, last_run_state=runs[job.last_run].state))
                if job.last_run in runs
                else (name, JobRow(job=job))
                for name, job in rows
            ],
            query.limit,
        )

    def endpoints(self, delivery: Delivery) -> Reply:
        """A service's endpoints as last announced; for a task id or a task name, the
        endpoints of those tasks that serve now."""
        query = decode(ENDPOINTS, delivery.body)
        service = self.store.service(query.name)
        if service is not None:
            found = service.endpoints
        else:
            task = self.store.task(query.name)
            named = [task] if task is not None else self.store.tasks_named(query.name)
            if not named:
                return Reply(ok=False, error=f"no service or task named {query.name!r}")
            found = tuple(sorted({e for t in named if serving(t) for e in t.endpoints}))
        result = ServiceEndpoints(name=query.name, endpoints=found, at=self.clock())
        return Reply(ok=True, id=query.name, result=_dump(result))

    def orphan_list(self, delivery: Delivery) -> Reply:
        """The containers the nodes last reported that no task of this cluster placed."""
        book = self.orphans

        def judge(orphan: Orphan) -> Refused | None:
            return refusal(orphan, self.store.task(orphan.task_id), book.being_removed(orphan))

        found = listing(book.all(), book.left_out(), judge)
        return Reply(ok=True, result=_dump(found))

    def logs(self, delivery: Delivery) -> Reply | None:
        query = decode(LOGS, delivery.body)
        task = self.store.task(query.id)
        if task is None:
            return Reply(ok=False, error=f"unknown task {query.id!r}")
        if query.attempt is not None or query.previous:  # kept output, asked for
            asked = self.store.kept_output(task.id, query.attempt)
            if asked is None:
                return kept_output.missing(task, query.attempt)
            return kept_output.shown(asked, query.tail)
        kept = self.store.kept_output(task.id)  # shown if the live output cannot be had
        if task.node is None or not kept_output.live(task):
            if kept is not None:
                return kept_output.shown(kept, query.tail, f"task {task.id} is {task.state.value}")
            return Reply(
                ok=False, error=f"task {task.id} has no container yet ({task.state.value})"
            )
        node = self.store.node(task.node)
        if node is None or node.status != NodeStatus.READY:
            why = f"node {task.node} of task {task.id} is down"
            return kept_output.instead(kept, query.tail, why)
        if not delivery.reply_to:
            return Reply(
                ok=False, error="query.logs without reply_to: the output has nowhere to go"
            )
        request = self.relay.request(
            reply_to=delivery.reply_to,
            correlation_id=delivery.correlation_id,
            node=task.node,
            task_id=task.id,
            attempt=task.attempt,
            tail=query.tail,
            now=self.monotonic(),
            fallback=kept,
        )
        refused = ask_node(self.bus, task.node, encode(request), self.epoch, request.ttl)
        if refused is not None:
            self.relay.forget(request.request_id)
            why = refused.error or f"worker {task.node} has no dispatch queue"
            return kept_output.instead(kept, query.tail, why)
        return None  # the answer comes from the worker, through the manager (manager.log_relay)


def ask_node(bus: MessageBus, node: str, body: bytes, epoch: int, ttl: float) -> Reply | None:
    """Send a request on a node's queue at once (confirmed), dropped by the broker unread
    after `ttl` seconds; the refusal to answer when the node has no queue."""
    try:
        bus.publish(
            topology.DISPATCH,
            node,
            stamp(body, epoch),
            persistent=False,
            mandatory=True,
            expiration=ttl,
        )
    except UnroutableError:
        return Reply(ok=False, error=f"worker {node} has no dispatch queue")
    return None


PAGE_BYTES = MAX_BODY_BYTES - 64 * 1024
"""What the records of one list reply may take: the reply and its envelope must fit in
a message (a record is at most MAX_SPEC_BYTES and some, so one always fits)."""


def page(rows: Sequence[tuple[str, BaseModel]], limit: int) -> Reply:
    """A list reply of the first rows, as many as `limit` and PAGE_BYTES allow; `next` is
    set when rows are left."""
    result: list[Any] = []
    size = 0
    last: str | None = None
    for key, record in rows[:limit]:
        size += len(record.model_dump_json().encode()) + 1  # bytes, not characters
        if result and size > PAGE_BYTES:
            return Reply(ok=True, result=result, next=last)
        result.append(record.model_dump(mode="json"))
        last = key
    return Reply(ok=True, result=result, next=last if len(rows) > limit else None)


def _list(delivery: Delivery) -> ListQuery:
    """A list query's body: empty means the first page."""
    if delivery.body.strip():
        return decode(LIST, delivery.body)
    return ListQuery()


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")
