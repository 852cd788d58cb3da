"""A Manager on a stand-in bus, for tests of its batches and handlers without a broker."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from manager.config import ManagerConfig
from manager.effects import Decision
from manager.server import PROBE_KEY, Manager
from manager.store import connect
from shared import topology
from shared.bus import Delivery, Published, StubBus
from shared.models import NodeRecord, NodeStatus
from shared.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PROBES = (PROBE_KEY, topology.RESULTS_PROBE_KEY)
"""The routing keys of the manager's probes: of the broker's confirms, of its results queue."""
GI = 1024**3


def ready_node(name: str, at: datetime = NOW, **fields: Any) -> NodeRecord:
    """A ready node with 4 cpus, 4Gi memory and 100Gi disk unless told otherwise."""
    values: dict[str, Any] = {
        "name": name,
        "status": NodeStatus.READY,
        "cpus": 4.0,
        "memory": 4 * GI,
        "disk": 100 * GI,
        "last_heartbeat": at,
    }
    return NodeRecord(**{**values, **fields})


def advance(manager: Manager, seconds: float) -> None:
    """Move the manager's wall and monotonic clocks `seconds` on."""
    wall, ticks = manager.clock() + timedelta(seconds=seconds), manager.monotonic() + seconds
    manager.clock = lambda: wall
    manager.monotonic = lambda: ticks


def checking_bus(store: str) -> StubBus:
    """A StubBus that checks every publish against what another connection to the
    manager's database sees (committed rows only)."""

    def committed(table: str, column: str) -> set[Any]:
        reader = connect(store)
        try:
            return {row[0] for row in reader.query(f"SELECT {column} FROM {table}")}
        finally:
            reader.close()

    def check(message: Published) -> None:
        if message.exchange == topology.DEAD_LETTER or message.routing_key in PROBES:
            return  # a refused message's copy, or one of the manager's probes: not recorded
        if message.exchange == "":  # a reply names a task (or a job) that must be there
            answer = json.loads(message.body)
            if answer["ok"] and answer["id"] is not None:
                known = committed("tasks", "id") | committed("jobs", "name")
                assert answer["id"] in known, "replied before committed"
        else:
            assert message.body in committed("outbox", "body"), "published before committed"

    bus = StubBus()
    bus.checks.append(check)
    return bus


def events(bus: StubBus) -> list[tuple[str, Any]]:
    """What the bus did, in order: ("publish", routing key) and ("ack", delivery tag)."""
    return [(kind, item.routing_key if kind == "publish" else item.tag) for kind, item in bus.log]


def submit(tag: int, task_id: str) -> Delivery:
    body = json.dumps({"id": task_id, "name": task_id, "image": "busybox"}).encode()
    return command(tag, topology.SUBMIT_KEY, body)


def command(tag: int, key: str, body: bytes, user_id: str | None = "guest") -> Delivery:
    """A command as the manager receives it, from the broker user it trusts by default
    (its own, guest), which may also send an operator's commands."""
    return Delivery(
        body=body,
        exchange=topology.COMMANDS,
        routing_key=key,
        headers={},
        reply_to="reply",
        correlation_id=f"c{tag}",
        message_id=None,
        user_id=user_id,
        redelivered=False,
        queue=topology.COMMANDS_QUEUE,
        tag=tag,
        generation=1,
    )


def manager_with_a_node(store: str) -> tuple[Manager, StubBus]:
    bus = checking_bus(store)
    config = ManagerConfig(store=store)
    manager = Manager(Settings(), config, bus=bus, clock=lambda: NOW)
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


def read_probes_back(manager: Manager, bus: StubBus) -> int:
    """Deliver the manager's probes of its results queue that are out back to it, as the
    broker would (manager/silence.py); returns how many."""
    out = {probe.id for probe in manager.probes.out}
    probes = [
        sent.body
        for sent in bus.published
        if sent.routing_key == topology.RESULTS_PROBE_KEY and json.loads(sent.body)["id"] in out
    ]
    for body in probes:
        manager.handle(result(next(_probe_tags), body), manager.on_result)
    return len(probes)


_probe_tags = itertools.count(1_000_000)  # delivery tags no test gives its own deliveries
