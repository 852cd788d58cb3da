"""Topic patterns as RabbitMQ matches them, for readers of the events stream (pure)."""

from __future__ import annotations

import pytest

from shared import topology
from shared.topology import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("task.*", "task.running", True),
        ("task.*", "task", False),
        ("task.*", "task.running.x", False),
        ("task.*", "node.ready", False),
        ("node.#", "node", True),
        ("node.#", "node.ready", True),
        ("#", "anything.at.all", True),
        ("*.ready", "node.ready", True),
        ("task.failed", "task.failed", True),
        ("task.failed", "task.running", False),
        ("#.ready", "node.ready", True),
    ],
)
def test_topic_patterns_match_as_amqp_does(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


def test_every_command_key_belongs_to_the_client_or_the_operator_not_both() -> None:
    # given the manager's command bindings, then each key it handles is someone's, once
    client, operator = set(topology.CLIENT_COMMAND_KEYS), set(topology.OPERATOR_COMMAND_KEYS)
    assert not client & operator
    bound = [b.routing_key for b in topology.manager_topology().bindings]
    for key in client | operator:
        assert any(topic_matches(pattern, key) for pattern in bound), key
