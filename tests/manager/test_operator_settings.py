"""An operator's labels and capacity caps win over what a worker reports (issue 12: a
worker claimed 10^9 cpus and another node's label, and drew tasks meant for that node)."""

from __future__ import annotations

from datetime import UTC, datetime

from manager import nodes
from shared.messages import Heartbeat
from shared.models import NodeRecord, NodeSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def beat(**fields: object) -> Heartbeat:
    claims = {"cpus": 4.0, "memory": 8 * 1024**3, "disk": 100 * 1024**3, **fields}
    return Heartbeat(node="n1", at=NOW, **claims)  # type: ignore[arg-type]


def joined(**claims: object) -> NodeRecord:
    return nodes.apply_heartbeat(None, beat(**claims), NOW).nodes[0]


def test_an_operators_label_wins_over_the_workers_and_lasts_across_heartbeats() -> None:
    # given a worker that claims the label that steers sensitive work
    node = joined(labels={"secure": "yes", "zone": "a"})
    # when the operator says otherwise
    (set_,) = nodes.configure(node, NodeSettings(name="n1", labels={"secure": "no"})).nodes
    # then the node's labels are the operator's at once, and after the next heartbeats
    assert set_.labels == {"secure": "no", "zone": "a"}
    (again,) = nodes.apply_heartbeat(set_, beat(labels={"secure": "yes"}), NOW).nodes
    assert again.labels == {"secure": "no"} and again.operator.labels == {"secure": "no"}


def test_removing_an_operators_label_gives_the_key_back_to_the_worker() -> None:
    node = nodes.configure(joined(), NodeSettings(name="n1", labels={"zone": "b"})).nodes[0]
    (cleared,) = nodes.configure(node, NodeSettings(name="n1", labels={"zone": None})).nodes
    assert "zone" not in cleared.labels and cleared.operator.labels == {}
    (next_,) = nodes.apply_heartbeat(cleared, beat(labels={"zone": "a"}), NOW).nodes
    assert next_.labels == {"zone": "a"}


def test_a_cap_bounds_what_the_worker_claims_until_cleared() -> None:
    # given a worker that claims 4,000 cpus
    node = joined(cpus=4000.0)
    # when the operator caps it at 8 cpus and 2 GiB
    settings = NodeSettings(name="n1", cpus=8, memory="2g")  # type: ignore[arg-type]
    (capped,) = nodes.configure(node, settings).nodes
    # then the node offers the caps now and after every heartbeat
    assert (capped.cpus, capped.memory) == (8, 2 * 1024**3)
    (next_,) = nodes.apply_heartbeat(capped, beat(cpus=4000.0), NOW).nodes
    assert (next_.cpus, next_.memory, next_.disk) == (8, 2 * 1024**3, 100 * 1024**3)
    # and a worker that claims less than the cap offers what it claims
    (small,) = nodes.apply_heartbeat(capped, beat(cpus=2.0), NOW).nodes
    assert small.cpus == 2
    # and once cleared, the next heartbeat's claim counts again
    (cleared,) = nodes.configure(next_, NodeSettings(name="n1", clear_caps=True)).nodes
    assert cleared.operator.cpus is None
    assert nodes.apply_heartbeat(cleared, beat(cpus=4000.0), NOW).nodes[0].cpus == 4000


def test_settings_that_change_nothing_decide_nothing() -> None:
    node = nodes.configure(joined(), NodeSettings(name="n1", labels={"zone": "a"})).nodes[0]
    assert nodes.configure(node, NodeSettings(name="n1", labels={"zone": "a"})).empty
