"""A Manager on a stand-in bus, for tests of its batches and handlers without a broker."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manager.effects import Decision
from manager.service import Manager, ManagerConfig
from shared import topology
from shared.bus import Bus, Delivery
from shared.confirms import Outbound
from shared.models import NodeRecord, NodeStatus
from shared.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class CheckingBus:
    """Stands in for the Bus: checks every publish against what another connection to the
    manager's database sees (committed rows only), and logs publishes and acks in order."""

    message = staticmethod(Bus.message)

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.log: list[tuple[str, Any]] = []
        self.while_confirming: list[Callable[[], None]] = []  # run during the next publish

    def committed(self, table: str, column: str) -> set[Any]:
        reader = sqlite3.connect(self.db_path)
        try:
            return {row[0] for row in reader.execute(f"SELECT {column} FROM {table}")}
        finally:
            reader.close()

    def publish_batch(self, batch: list[Outbound]) -> None:
        committed = self.committed("outbox", "body")
        tasks = self.committed("tasks", "id")
        for message in batch:
            if message.routing_key == "reply":  # a reply names a task that must be there
                assert json.loads(message.body)["id"] in tasks, "replied before committed"
            else:
                assert message.body in committed, "published before committed"
            self.log.append(("publish", message.routing_key))
        while self.while_confirming:  # deliveries handled while confirms are awaited
            self.while_confirming.pop(0)()

    def reply(self, delivery: Delivery, body: bytes) -> None:
        answer = json.loads(body)
        assert answer["id"] in self.committed("tasks", "id"), "answered before committed"
        self.log.append(("reply", answer["result"]["task"]["state"]))

    def ack(self, delivery: Delivery) -> None:
        self.log.append(("ack", delivery.tag))

    def ack_batch(self, deliveries: list[Delivery]) -> None:
        self.log.extend(("ack", delivery.tag) for delivery in deliveries)

    def declare(self, topology: object) -> None:
        self.log.append(("declare", topology))


def submit(tag: int, task_id: str) -> Delivery:
    body = json.dumps({"id": task_id, "name": task_id, "image": "busybox"}).encode()
    return command(tag, topology.SUBMIT_KEY, body)


def command(tag: int, key: str, body: bytes) -> Delivery:
    return Delivery(
        body=body,
        exchange=topology.COMMANDS,
        routing_key=key,
        headers={},
        reply_to="reply",
        correlation_id=f"c{tag}",
        message_id=None,
        user_id=None,
        redelivered=False,
        queue=topology.COMMANDS_QUEUE,
        tag=tag,
        generation=1,
    )


def manager_with_a_node(tmp_path: Path) -> tuple[Manager, CheckingBus]:
    bus = CheckingBus(tmp_path / "m.db")
    config = ManagerConfig(db_path=tmp_path / "m.db")
    manager = Manager(Settings(), config, bus=bus, clock=lambda: NOW)  # type: ignore[arg-type]
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )
    manager.commit(Decision(nodes=[node]))
    return manager, bus


def result(tag: int, body: bytes) -> Delivery:
    """A worker's result (an update or a heartbeat) as the manager receives it, from the
    broker user the manager trusts by default (its own)."""
    return Delivery(
        body=body,
        exchange=topology.RESULTS,
        routing_key="result",
        headers={},
        reply_to=None,
        correlation_id=None,
        message_id=None,
        user_id="guest",
        redelivered=False,
        queue=topology.RESULTS_QUEUE,
        tag=tag,
        generation=1,
    )
