"""The manager's cluster id: made once, kept, and told to workers that do not know it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from manager.cluster import introduce
from manager.store import Store, read_cluster_id
from shared import topology
from shared.messages import Heartbeat

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def beat(cluster: str | None, part: int = 0) -> Heartbeat:
    return Heartbeat(
        node="n1", at=NOW, cpus=1, memory=1, disk=1, cluster=cluster, part=part, parts=2
    )


def test_the_cluster_id_is_made_once_and_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    made = store.cluster_id
    store.close()
    again = Store(tmp_path / "m.db")
    assert again.cluster_id == made and len(made) == 16
    assert read_cluster_id(tmp_path / "m.db") == made
    again.close()
    other = Store(tmp_path / "other.db")
    assert other.cluster_id != made  # another cluster
    other.close()


def test_a_worker_is_told_its_cluster_until_its_heartbeats_name_it() -> None:
    (told,) = introduce(beat(None), "c0ffee00").outgoing
    assert (told.exchange, told.routing_key) == (topology.DISPATCH, "n1")
    assert json.loads(told.body) == {"kind": "cluster", "cluster": "c0ffee00"}
    assert introduce(beat("deadbeef"), "c0ffee00").outgoing  # another: told again
    assert introduce(beat("c0ffee00"), "c0ffee00").empty
    assert introduce(beat(None, part=1), "c0ffee00").empty  # once a heartbeat
