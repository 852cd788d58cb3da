"""Whatever arrives on the wire is checked against what the next hop accepts: numbers the
store can hold, aware times, names the broker and the engine accept, bounded sizes
(issue 12). Each refusal names the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.messages import HELD_PER_PART, MAX_PARTS, Heartbeat, Result, RunTask, TaskUpdate
from shared.models import TaskRecord, TaskSpec
from shared.wire import MAX_BODY_BYTES, MAX_INT64, MAX_SPEC_BYTES, MAX_TEXT

RESULT: TypeAdapter[Any] = TypeAdapter(Result)
SPEC: TypeAdapter[TaskSpec] = TypeAdapter(TaskSpec)
NOW = datetime.now(UTC).isoformat()


def heartbeat(**fields: Any) -> dict[str, Any]:
    return {"kind": "heartbeat", "node": "n1", "at": NOW, "cpus": 2.0, "memory": 1, "disk": 1,
            **fields}  # fmt: skip


def held(attempt: int = 1) -> dict[str, Any]:
    return {"task_id": "t1", "attempt": attempt, "state": "running", "container_id": "c1"}


def refused(adapter: TypeAdapter[Any], body: bytes | str) -> str:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(DecodeError) as caught:
        decode(adapter, raw)
    return caught.value.reason


def raw_heartbeat(cpus: str) -> str:
    """A heartbeat whose cpus is written as given: JSON's NaN and 1e999 are no Python float."""
    return json.dumps(heartbeat()).replace('"cpus": 2.0', f'"cpus": {cpus}')


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (raw_heartbeat("NaN"), "NaN"),
        (raw_heartbeat("1e999"), "cpus"),
        (json.dumps(heartbeat(cpus=1e9)), "cpus"),
        (json.dumps(heartbeat(memory=2**64)), "memory"),
        (json.dumps(heartbeat(stats={"memory_used": MAX_INT64 + 1})), "memory_used"),
        (json.dumps(heartbeat(at="2026-01-01T00:00:00")), "timezone"),
        (json.dumps(heartbeat(node="bad name")), "node"),
        (json.dumps(heartbeat(node="a/b")), "node"),
        (json.dumps(heartbeat(node="n" * 300)), "node"),
        (json.dumps(heartbeat(tasks=[held(attempt=0)])), "attempt"),
        (json.dumps(heartbeat(part=0, parts=MAX_PARTS + 1)), "parts"),
        (json.dumps(heartbeat(tasks=[held()] * (HELD_PER_PART + 1))), "tasks"),
        (json.dumps(heartbeat(labels={f"k{i}": "v" for i in range(100)})), "labels"),
    ],
)
def test_a_heartbeat_the_store_could_not_hold_is_refused_naming_the_field(
    body: str, word: str
) -> None:
    assert word in refused(RESULT, body)


def test_an_update_with_a_huge_attempt_or_exit_code_is_refused() -> None:
    update = {"kind": "update", "node": "n1", "task_id": "t1", "attempt": 1, "state": "failed",
              "at": NOW}  # fmt: skip
    assert "attempt" in refused(RESULT, json.dumps({**update, "attempt": 2**63}))
    assert "exit_code" in refused(RESULT, json.dumps({**update, "exit_code": -(2**64)}))


def test_a_key_given_twice_is_refused_not_silently_the_last_one() -> None:
    body = '{"name": "web", "image": "busybox", "cpu": 0.5, "cpu": 64}'
    assert "'cpu' given more than once" in refused(SPEC, body)


def test_a_nested_key_given_twice_is_refused_too() -> None:
    body = '{"name": "web", "image": "b", "restart": {"policy": "never", "policy": "always"}}'
    assert "'policy'" in refused(SPEC, body)


def test_spec_sizes_past_64_bits_are_refused() -> None:
    assert "memory" in refused(SPEC, json.dumps({"name": "w", "image": "b", "memory": 2**70}))
    assert "memory" in refused(SPEC, json.dumps({"name": "w", "image": "b", "memory": "9e30g"}))


def test_a_long_error_is_cut_so_that_the_message_stays_valid() -> None:
    update = TaskUpdate(
        node="n1", task_id="t1", attempt=1, state="failed", at=NOW, error="x" * (10 * MAX_TEXT)
    )  # type: ignore[arg-type]
    assert update.error is not None and len(update.error) <= MAX_TEXT
    assert update.error.endswith("[... cut by kube]")


def test_a_valid_heartbeat_still_decodes() -> None:
    beat = decode(RESULT, json.dumps(heartbeat(tasks=[held()])).encode())
    assert isinstance(beat, Heartbeat) and beat.tasks[0].attempt == 1


def largest_spec(size: int) -> TaskSpec:
    """A spec whose JSON body is `size` bytes, filled by one environment variable."""
    spec = TaskSpec(name="n" * 63, image="i" * 255, env={"BIG": ""})
    fill = size - len(encode(spec))
    return spec.model_copy(update={"env": {"BIG": "x" * fill}})


def test_what_kube_accepts_it_can_dispatch_and_publish() -> None:
    # given the largest spec a submit may carry
    spec = largest_spec(MAX_SPEC_BYTES)
    assert len(encode(spec)) == MAX_SPEC_BYTES
    assert decode(SPEC, encode(spec), max_bytes=MAX_SPEC_BYTES) == spec
    # then its dispatch and its task record, with the longest texts, fit in a message
    dispatch = RunTask(task_id="t" * 63, attempt=MAX_INT64, spec=spec)
    assert len(encode(dispatch)) <= MAX_BODY_BYTES
    now = datetime.now(UTC)
    record = TaskRecord(
        id="t" * 63, name=spec.name, state="failed", node="n" * 63, image=spec.image,
        container_id="c" * 128, attempt=MAX_INT64, restart_count=MAX_INT64,
        exit_code=-MAX_INT64, error="e" * MAX_TEXT, last_check="l" * MAX_TEXT, service="s" * 63,
        version=MAX_INT64, created_at=now, updated_at=now, not_before=now, spec=spec,
        host_ports={str(p): p for p in range(1, 257)},
    )  # type: ignore[arg-type]  # fmt: skip
    assert len(encode(record)) <= MAX_BODY_BYTES
    # and one byte more is refused at submit, naming the limit
    assert "over the" in refused_sized(encode(largest_spec(MAX_SPEC_BYTES + 1)))


def refused_sized(body: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(SPEC, body, max_bytes=MAX_SPEC_BYTES)
    return caught.value.reason
