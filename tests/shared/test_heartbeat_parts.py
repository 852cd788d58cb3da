"""Heartbeats of nodes holding many containers: in parts, each under the body limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter

from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.messages import HELD_PER_PART, Heartbeat, HeldTask, Result
from shared.models import MAX_BODY_BYTES
from shared.states import TaskState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RESULT: TypeAdapter[object] = TypeAdapter(Result)


def held(count: int) -> list[HeldTask]:
    """Containers with the longest task ids there may be and Docker-length container ids."""
    return [
        HeldTask(task_id=f"{i:063d}", attempt=10**9, state=TaskState.RUNNING, container_id="f" * 64)
        for i in range(count)
    ]


def beat() -> Heartbeat:
    return Heartbeat(node="n1", at=NOW, cpus=64, memory=2**40, disk=2**40, inventory=True)


def test_a_node_with_20000_containers_heartbeats_in_parts_under_the_body_limit() -> None:
    # given a node holding 20,000 containers
    containers = held(20_000)
    # (listed in one message they are far over the limit, and the manager refuses them)
    one = encode(beat().model_copy(update={"tasks": tuple(containers)}))
    with pytest.raises(DecodeError, match="over the"):
        decode(RESULT, one)
    assert len(one) > 2 * MAX_BODY_BYTES
    # when its heartbeat is split into parts
    parts = beat().in_parts(containers)
    # then every part decodes within the limit, and together they list every container
    assert len(parts) == 20_000 // HELD_PER_PART
    bodies = [encode(part) for part in parts]
    assert max(len(body) for body in bodies) < MAX_BODY_BYTES // 2
    decoded = [decode(RESULT, body) for body in bodies]
    assert [(p.part, p.parts, p.at) for p in decoded] == [  # type: ignore[attr-defined]
        (i, len(parts), NOW) for i in range(len(parts))
    ]
    assert [t for p in decoded for t in p.tasks] == containers  # type: ignore[attr-defined]


def test_a_node_with_few_or_no_containers_sends_one_message() -> None:
    assert [(p.part, p.parts, len(p.tasks)) for p in beat().in_parts(held(3))] == [(0, 1, 3)]
    assert [(p.part, p.parts, len(p.tasks)) for p in beat().in_parts([])] == [(0, 1, 0)]


def test_a_part_beyond_the_count_is_refused() -> None:
    body = encode(beat()).replace(b'"part":0', b'"part":2')
    with pytest.raises(DecodeError, match="part 2 of a heartbeat in 1 parts"):
        decode(RESULT, body)
