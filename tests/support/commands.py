"""A Manager on a stand-in bus that records what it publishes, answers, acks and
dead-letters, and helpers that drive its command handlers one batch at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from manager.config import ManagerConfig
from manager.effects import Decision
from manager.server import Manager
from shared.bus import StubBus
from shared.bus.stub import Published
from shared.messages import TaskUpdate
from shared.models import NodeRecord, NodeStatus, TaskRecord
from shared.settings import Settings
from shared.states import TaskState
from shared.topology import DEAD_LETTER
from tests.support.manager import NOW, command, result


class StandInBus(StubBus):
    """The package's StubBus, with what the manager sends sorted for these tests: answers
    (to the "" exchange) in `replies`, dead letters' reasons in `dead`, and every other
    message in `published`."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[dict[str, Any]] = []

    def _take(self, message: Published) -> None:
        if message.exchange == "":
            self.replies.append(json.loads(message.body))
        elif message.exchange != DEAD_LETTER:
            super()._take(message)

    @property
    def dead(self) -> list[str]:
        return [reason for _, reason in self.dead_letters]

    def routing_keys(self) -> list[str]:
        return [m.routing_key for m in self.published]


def stand_in_manager(store: str) -> Iterator[Manager]:
    """A manager on a StandInBus with one ready node, n1; closed after (a fixture's body)."""
    bus = StandInBus()
    config = ManagerConfig(store=store)
    manager = Manager(Settings(), config, bus=bus, clock=lambda: NOW)
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )
    manager.commit(Decision(nodes=[node]))
    manager.finish_batch()
    yield manager
    manager.store.close()


def bus_of(manager: Manager) -> StandInBus:
    assert isinstance(manager.bus, StandInBus)
    return manager.bus


def send(manager: Manager, key: str, body: dict[str, Any], tag: int = 1) -> dict[str, Any]:
    """Handle one command as one batch; the manager's answer."""
    bus = bus_of(manager)
    before = len(bus.replies)
    manager.commands.on_command(command(tag, key, json.dumps(body).encode()))
    manager.finish_batch()
    assert len(bus.replies) == before + 1
    return bus.replies[-1]


def report(manager: Manager, task: TaskRecord, state: TaskState, tag: int = 100) -> None:
    """The task's node reports its current attempt in `state`."""
    update = TaskUpdate(
        node=task.node or "n1", task_id=task.id, attempt=task.attempt, state=state, at=NOW
    )
    manager.on_result(result(tag, update.model_dump_json().encode()))
    manager.finish_batch()


def sleeper(name: str = "web", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sleep", "300"], **fields}
