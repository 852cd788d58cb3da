"""What one client may ask: replicas per service and tasks a minute per user (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from manager.quotas import Quotas
from manager.server import Manager
from shared import topology
from tests.support.commands import send, sleeper, stand_in_manager


@pytest.fixture
def manager(store_url: str) -> Iterator[Manager]:
    yield from stand_in_manager(store_url)


def test_a_service_over_the_replica_bound_is_refused_naming_it(manager: Manager) -> None:
    manager.quotas = Quotas(max_replicas=10)
    answer = send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=11))
    assert not answer["ok"] and "over the bound of 10 a service may have" in answer["error"]
    assert "--max-replicas" in answer["error"] and manager.store.services() == []
    assert send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=10), tag=2)["ok"]
    scaled = send(manager, topology.SCALE_KEY, {"name": "web", "replicas": 10_000}, tag=3)
    assert not scaled["ok"] and "--max-replicas" in scaled["error"]
    (web,) = manager.store.services()
    assert web.replicas == 10


def test_a_user_past_its_tasks_a_minute_is_refused_until_the_budget_refills() -> None:
    quotas = Quotas(tasks_per_minute=60)
    assert quotas.take("alice", 60, 100.0) is None  # a whole minute's worth at once
    refused = quotas.take("alice", 1, 100.0)
    assert refused is not None and "60 tasks a minute" in refused and "alice" in refused
    assert quotas.take("bob", 10, 100.0) is None  # budgets are per user
    assert quotas.take("alice", 30, 130.0) is None  # half refilled
    assert quotas.take("alice", 1, 130.0) is not None


def test_scaling_up_is_charged_by_the_tasks_it_adds(manager: Manager) -> None:
    manager.quotas = Quotas(tasks_per_minute=5)
    assert send(manager, topology.SUBMIT_KEY, sleeper("web", replicas=3))["ok"]
    assert send(manager, topology.SCALE_KEY, {"name": "web", "replicas": 1}, tag=2)["ok"]
    more = send(manager, topology.SCALE_KEY, {"name": "web", "replicas": 6}, tag=3)
    assert not more["ok"] and "has 2 left now, not 5" in more["error"]


def test_a_spec_that_outgrows_the_limit_once_its_defaults_are_filled_is_refused(
    manager: Manager,
) -> None:
    from shared.models import MAX_SPEC_BYTES

    # given a body just under the limit that becomes larger as kube stores and sends it
    body = {"name": "big", "image": "b", "env": {"BIG": "x" * (MAX_SPEC_BYTES - 80)}}
    answer = send(manager, topology.SUBMIT_KEY, body)
    # then it is refused naming the limit, before anything is recorded
    assert not answer["ok"] and "with its defaults filled in" in answer["error"]
    assert manager.store.tasks() == []
