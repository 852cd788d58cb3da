"""Answers to the read-only requests of the CLI and clients (`query.*` on kube.commands).

Replies are not persistent and queries change nothing, so nothing here needs the outbox.
`query.logs` is sent on to the worker that holds the container, as a `LogsRequest` on its
dispatch queue; the manager relays the worker's answer (`manager.logs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from manager.logs import LogRelay
from manager.store import Store
from shared import topology
from shared.bus import Delivery, MessageBus
from shared.codec import decode, encode
from shared.errors import DecodeError, UnroutableError
from shared.messages import ListQuery, LogsQuery, TaskQuery
from shared.models import NodeStatus, Reply

log = logging.getLogger(__name__)

LIST = TypeAdapter(ListQuery)
TASK = TypeAdapter(TaskQuery)
LOGS = TypeAdapter(LogsQuery)


class Queries:
    """Serves `query.tasks`, `query.task`, `query.nodes` and `query.logs`."""

    def __init__(
        self, store: Store, bus: MessageBus, relay: LogRelay, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.bus = bus
        self.relay = relay
        self.clock = clock
        self.handlers: dict[str, Callable[[Delivery], Reply | None]] = {
            "query.tasks": self.tasks,
            "query.task": self.task,
            "query.nodes": self.nodes,
            "query.services": self.services,
            "query.logs": self.logs,
        }

    def on_query(self, delivery: Delivery) -> None:
        handler = self.handlers.get(delivery.routing_key)
        if handler is None:
            reply: Reply | None = Reply(
                ok=False,
                error=f"unknown query {delivery.routing_key!r}; known: {', '.join(self.handlers)}",
            )
        else:
            try:
                reply = handler(delivery)
            except DecodeError as exc:
                reply = Reply(ok=False, error=f"invalid {delivery.routing_key}: {exc.reason}")
        if reply is not None:
            if not reply.ok:
                log.info("query %s refused: %s", delivery.routing_key, reply.error)
            self.bus.reply(delivery, encode(reply))
        self.bus.ack(delivery)

    def tasks(self, delivery: Delivery) -> Reply:
        _body(LIST, delivery)
        return Reply(ok=True, result=[_dump(task) for task in self.store.tasks()])

    def task(self, delivery: Delivery) -> Reply:
        query = decode(TASK, delivery.body)
        task = self.store.task(query.id)
        if task is None:
            return Reply(ok=False, error=f"unknown task {query.id!r}")
        events = [_dump(event) for event in self.store.events(task.id)]
        return Reply(ok=True, id=task.id, result={"task": _dump(task), "events": events})

    def nodes(self, delivery: Delivery) -> Reply:
        _body(LIST, delivery)
        return Reply(ok=True, result=[_dump(node) for node in self.store.nodes()])

    def services(self, delivery: Delivery) -> Reply:
        _body(LIST, delivery)
        return Reply(ok=True, result=[_dump(service) for service in self.store.services()])

    def logs(self, delivery: Delivery) -> Reply | None:
        query = decode(LOGS, delivery.body)
        task = self.store.task(query.id)
        if task is None:
            return Reply(ok=False, error=f"unknown task {query.id!r}")
        if task.node is None or task.attempt == 0:
            return Reply(
                ok=False, error=f"task {task.id} has no container yet ({task.state.value})"
            )
        node = self.store.node(task.node)
        if node is None or node.status != NodeStatus.READY:
            return Reply(ok=False, error=f"node {task.node} of task {task.id} is down")
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
            now=self.clock(),
        )
        try:
            self.bus.publish(
                topology.DISPATCH, task.node, encode(request), persistent=False, mandatory=True
            )
        except UnroutableError:
            self.relay.forget(request.request_id)
            return Reply(ok=False, error=f"worker {task.node} has no dispatch queue")
        return None  # the answer comes from the worker, through the manager (manager.logs)


def _body(adapter: TypeAdapter[Any], delivery: Delivery) -> None:
    """Validate an optional body (empty means no parameters)."""
    if delivery.body.strip():
        decode(adapter, delivery.body)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")
