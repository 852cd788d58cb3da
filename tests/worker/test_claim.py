"""One worker per node name: the refusal names who holds it (worker/claim.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.models import NodeRecord, NodeStatus
from worker.claim import refusal

SINCE = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(status: NodeStatus = NodeStatus.READY, hostname: str | None = "alpha") -> NodeRecord:
    return NodeRecord(
        name="n1",
        status=status,
        cpus=1,
        memory=1,
        disk=1,
        last_heartbeat=SINCE,
        hostname=hostname,
        pid=4242,
        ready_since=SINCE,
    )


def test_a_name_whose_queue_has_a_consumer_is_refused_naming_the_holder() -> None:
    reason = refusal("n1", 1, record(), "beta")
    assert reason is not None
    assert reason.startswith("another worker named n1 is running (host alpha")
    assert "host alpha, pid 4242, since 2026-11-27T12:00:00+00:00, ready" in reason
    assert "--name" in reason


def test_without_the_managers_record_the_refusal_points_at_kube_nodes() -> None:
    reason = refusal("n1", 1, None, "beta")
    assert reason is not None and "`kube nodes` shows its host" in reason


def test_a_restart_on_the_same_host_takes_the_name_at_once() -> None:
    # the first was killed: its connection closed, the manager still holds it ready
    assert refusal("n1", 0, record(), "alpha") is None


def test_another_host_waits_until_the_holder_is_down() -> None:
    reason = refusal("n1", 0, record(), "beta")
    assert reason is not None and "once `kube nodes` shows it down" in reason
    assert refusal("n1", 0, record(NodeStatus.DOWN), "beta") is None
    assert refusal("n1", 0, None, "beta") is None  # unknown, or the manager cannot be asked
    assert refusal("n1", 0, record(hostname=None), "beta") is None  # an older worker
