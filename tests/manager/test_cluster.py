"""The manager's cluster id: made once, kept, and told to workers that do not know it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from manager.cluster import introduce
from manager.store import Store, read_cluster_id
from shared import topology
from shared.messages import Heartbeat
from tests.support.stores import Stores

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def beat(cluster: str | None, part: int = 0) -> Heartbeat:
    return Heartbeat(
        node="n1", at=NOW, cpus=1, memory=1, disk=1, cluster=cluster, part=part, parts=2
    )


def test_the_cluster_id_is_made_once_and_kept(stores: Stores) -> None:
    url = stores.new()
    store = Store(url)
    made = store.cluster_id
    store.close()
    again = Store(url)
    assert again.cluster_id == made and len(made) == 16
    assert read_cluster_id(url) == made
    again.close()
    other = Store(stores.new())
    assert other.cluster_id != made  # another cluster
    other.close()


def test_a_worker_is_told_its_cluster_until_its_heartbeats_name_it() -> None:
    (told,) = introduce(beat(None), "c0ffee00").outgoing
    assert (told.exchange, told.routing_key) == (topology.DISPATCH, "n1")
    assert json.loads(told.body) == {"kind": "cluster", "epoch": 0, "cluster": "c0ffee00"}
    assert introduce(beat("deadbeef"), "c0ffee00").outgoing  # another: told again
    assert introduce(beat("c0ffee00"), "c0ffee00").empty
    assert introduce(beat(None, part=1), "c0ffee00").empty  # once a heartbeat
