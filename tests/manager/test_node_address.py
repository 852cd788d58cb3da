"""A node's advertised address: from its heartbeat to its record, `kube nodes` and metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from kube import render
from manager import nodes
from manager.effects import Decision
from manager.gauges import StoreGauges
from manager.store import Store
from shared.codec import decode
from shared.errors import DecodeError
from shared.messages import Heartbeat
from shared.models import NodeRecord

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HEARTBEAT = TypeAdapter(Heartbeat)


def beat(address: str | None) -> Heartbeat:
    return Heartbeat(node="n1", at=NOW, cpus=2, memory=1024, disk=1024, address=address)


def test_the_heartbeats_address_is_the_nodes_and_every_node_event_carries_it() -> None:
    # when a node joins advertising an address
    decision = nodes.apply_heartbeat(None, beat("10.1.0.2"), NOW)

    # then its record has it, and so has the body of each event about it
    assert decision.nodes[0].address == "10.1.0.2"
    for out in decision.outgoing:
        assert decode(TypeAdapter(NodeRecord), out.body).address == "10.1.0.2"

    # and a heartbeat with a new address replaces it
    moved = nodes.apply_heartbeat(decision.nodes[0], beat("10.1.0.3"), NOW)
    assert moved.nodes[0].address == "10.1.0.3"


@pytest.mark.parametrize("address", ["not an address", "10.0.0.256", "x" * 300])
def test_a_heartbeat_with_a_bad_address_is_refused(address: str) -> None:
    body = beat(None).model_dump_json().replace('"address":null', f'"address":"{address}"')
    with pytest.raises(DecodeError) as caught:
        decode(HEARTBEAT, body.encode())
    assert "address" in caught.value.reason


def test_kube_nodes_shows_the_address() -> None:
    known = nodes.apply_heartbeat(None, beat("10.1.0.2"), NOW).nodes[0]
    silent = known.model_copy(update={"name": "n2", "address": None})
    lines = render.nodes([known, silent]).splitlines()
    assert lines[0].split()[:3] == ["NAME", "STATUS", "ADDRESS"]
    assert lines[1].split()[:3] == ["n1", "ready", "10.1.0.2"]
    assert lines[2].split()[:3] == ["n2", "ready", "-"]


def test_the_node_info_gauge_carries_the_address(tmp_path: Path) -> None:
    # given a store with a node that advertises an address
    store = Store(tmp_path / "manager.db")
    store.record(Decision(nodes=nodes.apply_heartbeat(None, beat("10.1.0.2"), NOW).nodes))
    store.close()

    # when Prometheus scrapes
    registry = CollectorRegistry()
    registry.register(StoreGauges(tmp_path / "manager.db", clock=lambda: NOW))

    # then the info gauge names the node and its address
    assert registry.get_sample_value("kube_node_info", {"node": "n1", "address": "10.1.0.2"}) == 1
