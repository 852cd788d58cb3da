"""The manager's handlers for `kube.commands`: tasks, services and nodes.

| routing key      | body            | effect                                              |
| ---------------- | --------------- | --------------------------------------------------- |
| task.submit      | TaskSpec        | a task, or with `replicas` a service                |
| task.stop        | {"id"}          | stops a task, or every task of the service so named |
| service.scale    | {"name", "replicas"} | changes how many tasks a service keeps         |
| service.update   | {"name", "spec"} | a new version, rolled out one task at a time       |
| node.cordon      | {"name"}        | no new placements on the node                       |
| node.uncordon    | {"name"}        | placements again                                    |
| node.drain       | {"name"}        | cordon, then move every task off the node           |

Each answers `Reply` to a `reply_to`; a bad message is answered and dead-lettered. The
node.* commands are an operator's: `manager/auth.py` checks who sent them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from manager import core, nodes, services
from manager.auth import command_sender_allowed
from shared import topology
from shared.bus import Delivery
from shared.codec import decode
from shared.errors import DecodeError
from shared.models import (
    ID_PATTERN,
    NodeRecord,
    NodeRequest,
    Reply,
    ScaleRequest,
    ServiceRecord,
    StopRequest,
    TaskSpec,
    UpdateRequest,
)

if TYPE_CHECKING:
    from manager.service import Manager

log = logging.getLogger(__name__)

SPEC = TypeAdapter(TaskSpec)
STOP = TypeAdapter(StopRequest)
SCALE = TypeAdapter(ScaleRequest)
UPDATE = TypeAdapter(UpdateRequest)
NODE = TypeAdapter(NodeRequest)


class Refused(Exception):
    """A command that cannot be carried out; the message says why."""


class Commands:
    """Routes each command to its handler; handlers return the id or name they acted on."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.store = manager.store
        self.handlers: dict[str, Callable[[Delivery], str]] = {
            topology.SUBMIT_KEY: self.submit,
            topology.STOP_KEY: self.stop,
            topology.SCALE_KEY: self.scale,
            topology.UPDATE_KEY: self.update,
            topology.CORDON_KEY: lambda d: self.cordon(d, schedulable=False),
            topology.UNCORDON_KEY: lambda d: self.cordon(d, schedulable=True),
            topology.DRAIN_KEY: self.drain,
        }

    def on_command(self, delivery: Delivery) -> None:
        handler = self.handlers.get(delivery.routing_key)
        if handler is None:
            known = ", ".join(self.handlers)
            self.manager.refuse(
                delivery, f"unknown routing key {delivery.routing_key!r}: use one of {known}"
            )
            return
        refused = command_sender_allowed(delivery.routing_key, delivery.user_id, self.manager.auth)
        if refused is not None:
            self.manager.refuse(delivery, refused)
            return
        try:
            done = handler(delivery)
        except DecodeError as exc:
            self.manager.refuse(delivery, f"invalid {delivery.routing_key}: {exc.reason}")
            return
        except Refused as exc:
            self.manager.refuse(delivery, str(exc))
            return
        self.manager.settle(delivery, Reply(ok=True, id=done))

    def submit(self, delivery: Delivery) -> str:
        try:
            spec = decode(SPEC, delivery.body)
        except DecodeError as exc:
            raise Refused(f"invalid task spec: {exc.reason}") from exc
        if spec.replicas is not None:
            return self._create_service(spec)
        task_id = spec.id or _message_id(delivery) or uuid.uuid4().hex[:16]
        existing = self.store.task(task_id)
        if existing is None:
            now = self.manager.clock()
            decision = core.accept(spec, task_id, now)
            self.manager.commit(decision.extend(self.manager.place(decision.tasks, now)))
        else:
            log.info("task %s: submitted again; already %s", task_id, existing.state.value)
        return task_id

    def _create_service(self, spec: TaskSpec) -> str:
        if self.store.service(spec.name) is not None:
            log.info("service %s: submitted again; unchanged (use service.update)", spec.name)
            return spec.name
        self.manager.reconcile_service(services.create(spec, self.manager.clock()))
        return spec.name

    def stop(self, delivery: Delivery) -> str:
        request = decode(STOP, delivery.body)
        service = self.store.service(request.id)
        if service is not None:
            self.manager.reconcile_service(services.stop(service, self.manager.clock()))
            return service.name
        task = self.store.task(request.id)
        if task is None:
            raise Refused(f"unknown task or service {request.id!r}")
        decision = core.request_stop(task, self.manager.clock())
        self.manager.commit(decision)
        self.manager.after_change(decision)
        return task.id

    def scale(self, delivery: Delivery) -> str:
        request = decode(SCALE, delivery.body)
        service = self._service(request.name)
        self.manager.reconcile_service(
            services.scale(service, request.replicas, self.manager.clock())
        )
        return service.name

    def update(self, delivery: Delivery) -> str:
        request = decode(UPDATE, delivery.body)
        service = self._service(request.name)
        if request.spec.name != service.name:
            raise Refused(
                f"spec.name {request.spec.name!r} differs from the service {service.name!r}"
            )
        self.manager.reconcile_service(services.update(service, request.spec, self.manager.clock()))
        return service.name

    def cordon(self, delivery: Delivery, schedulable: bool) -> str:
        request = decode(NODE, delivery.body)
        node = self._node(request.name)
        self.manager.commit(nodes.cordon(node, schedulable))
        log.info("node %s: %s", node.name, "uncordoned" if schedulable else "cordoned")
        if schedulable:
            self.manager.schedule_pending()
        return node.name

    def drain(self, delivery: Delivery) -> str:
        request = decode(NODE, delivery.body)
        node = self._node(request.name)
        placed = self.store.tasks_on(node.name, nodes.PLACED)
        decision = nodes.drain(node, placed, self.manager.clock())
        log.info("node %s: draining %d tasks", node.name, len(placed))
        self.manager.commit(decision)
        self.manager.schedule_pending()
        return node.name

    def _service(self, name: str) -> ServiceRecord:
        service = self.store.service(name)
        if service is None:
            raise Refused(f"unknown service {name!r}")
        return service

    def _node(self, name: str) -> NodeRecord:
        node = self.store.node(name)
        if node is None:
            raise Refused(f"unknown node {name!r}")
        return node


def new_task_id(service: str) -> str:
    """A fresh id for a task of a service: the service's name and a random suffix."""
    return f"{service}-{uuid.uuid4().hex[:8]}"


def _message_id(delivery: Delivery) -> str | None:
    """An AMQP message_id usable as a task id: it makes a raw publish idempotent too."""
    if delivery.message_id and re.match(ID_PATTERN, delivery.message_id):
        return delivery.message_id
    return None
