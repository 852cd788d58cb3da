"""What the message fuzzer (tests/fuzz) found in the wire's edges, each kept as a case."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import TypeAdapter

from shared.codec import decode
from shared.errors import DecodeError
from shared.messages import Result
from shared.models import TaskSpec
from shared.schema import render
from shared.units import parse_bytes

SPEC: TypeAdapter[TaskSpec] = TypeAdapter(TaskSpec)
RESULT: TypeAdapter[Any] = TypeAdapter(Result)


def test_a_size_of_hundreds_of_digits_is_refused_not_an_overflow() -> None:
    # given a spec whose memory is a string of 400 digits (float('9' * 400) is inf)
    body = json.dumps({"name": "a", "image": "b", "memory": "9" * 400}).encode()
    # when it is decoded, then it is refused with a reason, not an OverflowError
    with pytest.raises(DecodeError, match="too large a size"):
        decode(SPEC, body)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_body_nested_too_deeply_is_refused_not_a_recursion_error(depth: int) -> None:
    body = ("[" * depth + "]" * depth).encode()
    with pytest.raises(DecodeError, match="not JSON"):
        decode(SPEC, body)


@pytest.mark.parametrize("size", ["0A", "1 zz", "\u0663m", "5\tm"])
def test_a_size_with_a_unit_kube_does_not_know_is_not_allowed_by_the_schema(size: str) -> None:
    # given a size the JSON Schema allows, then kube accepts it too: here both refuse it

    pattern = json.loads(render("task-spec"))["properties"]["memory"]["anyOf"][1]["pattern"]
    assert re.match(pattern, size) is None
    with pytest.raises(ValueError):
        parse_bytes(size)


@pytest.mark.parametrize("size", ["64m", "1 GiB", "512Mi", "1.5kb", "7", " 3 T "])
def test_every_size_the_schema_allows_is_read(size: str) -> None:

    pattern = json.loads(render("task-spec"))["properties"]["memory"]["anyOf"][1]["pattern"]
    assert re.match(pattern, size) is not None
    assert parse_bytes(size) > 0


@pytest.mark.parametrize("name", ["result", "dispatch"])
def test_a_tagged_union_requires_its_tag_in_the_schema(name: str) -> None:
    # given the schema of kube.results, a body without `kind` breaks it: kube refuses one
    schema = json.loads(render(name))
    for ref in schema["discriminator"]["mapping"].values():
        assert "kind" in schema["$defs"][ref.rsplit("/", 1)[1]]["required"]
    body = {"node": "n", "at": "2026-01-01T00:00:00Z", "request_id": "r", "task_id": "t"}
    with pytest.raises(DecodeError, match="discriminator 'kind'"):
        decode(RESULT, json.dumps(body).encode())


@pytest.mark.parametrize("constraints", [{"zone": []}, {"k" * 300: "a"}, {"k" * 300: ["a", "b"]}])
def test_constraints_in_map_form_that_make_no_rule_are_refused_on_the_wire(
    constraints: dict[str, Any],
) -> None:
    # given a spec whose shorthand constraints would build no valid Constraint
    body = json.dumps({"name": "a", "image": "b", "constraints": constraints}).encode()
    # when it is decoded, then it is refused there, not when the scheduler reads its rules
    with pytest.raises(DecodeError, match="constraints"):
        decode(SPEC, body).rules()
