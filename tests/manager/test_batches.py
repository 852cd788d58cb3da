"""The manager's batches: record, commit, then publish (confirmed), then ack."""

from __future__ import annotations

import json

from tests.support.manager import command, events, manager_with_a_node, submit


def test_a_batch_is_committed_then_published_then_acked(store_url: str) -> None:
    # given a manager with a node
    manager, bus = manager_with_a_node(store_url)
    # when three tasks are submitted in one batch and the batch finishes
    for tag in (1, 2, 3):
        manager.commands.on_command(submit(tag, f"t{tag}"))
    manager.finish_batch()
    # then every message went out after its transaction committed (checking_bus), the
    # dispatches and replies before any ack, and every delivery was acked
    kinds = [kind for kind, _ in events(bus)]
    assert kinds.index("ack") > max(i for i, kind in enumerate(kinds) if kind == "publish")
    assert [tag for kind, tag in events(bus) if kind == "ack"] == [1, 2, 3]
    assert [key for kind, key in events(bus) if kind == "publish"].count("n1") == 3
    assert manager.store.outbox() == []
    manager.store.close()


def test_what_arrives_while_a_batch_publishes_is_committed_before_it_goes_out(
    store_url: str,
) -> None:
    # given a manager whose batch of one submit is being published
    manager, bus = manager_with_a_node(store_url)
    manager.commands.on_command(submit(1, "t1"))
    # when another submit is handled while the broker's confirms are awaited
    bus.while_confirming.append(lambda: manager.commands.on_command(submit(2, "t2")))
    manager.finish_batch()
    # then its dispatch went out only once committed (checking_bus), and it was finished
    # as a batch of its own at once: published, then acked after the first
    assert events(bus) == [
        ("publish", "task.pending"),
        ("publish", "task.scheduled"),
        ("publish", "n1"),
        ("publish", "task.pending"),
        ("publish", "task.scheduled"),
        ("publish", "n1"),
        ("publish", "reply"),
        ("ack", 1),
        ("publish", "reply"),
        ("ack", 2),
    ]
    manager.store.close()


def test_a_query_is_answered_from_committed_state(store_url: str) -> None:
    # given a manager that recorded a submit in a batch not finished yet
    manager, bus = manager_with_a_node(store_url)
    manager.commands.on_command(submit(1, "t1"))
    # when a query about that task arrives in the same batch
    manager.on_query(command(2, "query.task", b'{"id": "t1"}'))
    # then the answer is about committed state (checking_bus), and given at once
    assert events(bus) == [("publish", "reply"), ("ack", 2)]
    (answer,) = bus.published
    assert answer.exchange == "" and answer.correlation_id == "c2"
    assert json.loads(answer.body)["result"]["task"]["state"] == "scheduled"
    manager.store.close()
