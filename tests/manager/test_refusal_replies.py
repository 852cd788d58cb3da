"""What the message fuzzer (tests/fuzz) found in the manager's handlers, each kept as a case."""

from __future__ import annotations

import dataclasses

from shared.bus import Delivery
from tests.support.manager import manager_with_a_node, result


def test_a_refused_result_is_never_answered_into_a_queue_that_is_not_a_reply_queue(
    store_url: str,
) -> None:
    # given a manager, and a broken result whose reply_to names a worker's dispatch queue
    manager, bus = manager_with_a_node(store_url)
    replies: list[str | None] = []
    letters: list[str] = []
    bus.reply = lambda delivery, body: replies.append(delivery.reply_to)  # type: ignore[method-assign]
    bus.dead_letter = lambda delivery, reason: letters.append(reason)  # type: ignore[attr-defined]
    delivery: Delivery = dataclasses.replace(
        result(1, b'{"kind": "update"}'), reply_to="kube.node.n1"
    )
    # when the manager handles it
    manager.on_result(delivery)
    # then it is dead-lettered, and no refusal is written into the worker's queue
    assert len(letters) == 1 and "invalid result" in letters[0]
    assert replies == []
    manager.store.close()
