"""The wire models: what a spec accepts, what it refuses, and how it says so."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from shared.codec import decode, encode
from shared.errors import DecodeError
from shared.models import MAX_BODY_BYTES, PullPolicy, TaskSpec
from shared.units import format_bytes, parse_bytes

SPEC = TypeAdapter(TaskSpec)


def test_a_full_spec_decodes_with_sizes_in_bytes() -> None:
    body = (
        b'{"id": "web-1", "name": "web", "image": "busybox", "command": ["sh", "-c", "x"],'
        b' "env": {"A": "1"}, "ports": [8080], "cpu": 0.5, "memory": "64m", "disk": "1g",'
        b' "labels": {"team": "a"}, "pull_policy": "never"}'
    )
    spec = decode(SPEC, body)
    assert spec.memory == 64 * 1024**2 and spec.disk == 1024**3
    assert spec.command == ("sh", "-c", "x") and spec.ports == (8080,)
    assert spec.pull_policy is PullPolicy.NEVER


def test_defaults_are_if_not_present_and_no_limits() -> None:
    spec = decode(SPEC, b'{"name": "a", "image": "b"}')
    assert spec.pull_policy is PullPolicy.IF_NOT_PRESENT
    assert (spec.cpu, spec.memory, spec.disk, spec.id) == (0, 0, 0, None)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"name": "a", "image": "b", "extra": 1}', "extra"),
        (b'{"name": "a", "image": 5}', "image"),
        (b'{"name": "a", "image": "b", "ports": ["8080"]}', "ports.0"),
        (b'{"name": "a", "image": "b", "ports": [70000]}', "ports.0"),
        (b'{"name": "a", "image": "b", "ports": [80, 80]}', "ports"),
        (b'{"name": "a", "image": "b", "cpu": "1"}', "cpu"),
        (b'{"name": "a", "image": "b", "memory": "lots"}', "memory"),
        (b'{"name": "a", "image": "b", "memory": -1}', "memory"),
        (b'{"name": "a", "image": "b", "command": "sleep 1"}', "command"),
        (b'{"name": "a", "image": "b", "env": {"1X": "y"}}', "env"),
        (b'{"name": "a", "image": "b", "labels": {"kube.node": "x"}}', "labels"),
        (b'{"name": "a", "image": "b", "pull_policy": "sometimes"}', "pull_policy"),
        (b'{"name": "a b", "image": "b"}', "name"),
        (b'{"id": "../etc", "name": "a", "image": "b"}', "id"),
        (b'{"image": "b"}', "name"),
        (b'{"name": "a", "image": "b", "on_disconnect": {}}', "on_disconnect"),
        (
            b'{"name": "a", "image": "b", "on_disconnect": {"stop_after_seconds": 0.5}}',
            "on_disconnect.stop_after_seconds",
        ),
        (
            b'{"name": "a", "image": "b", "on_disconnect": {"stop_after_seconds": 86401}}',
            "on_disconnect.stop_after_seconds",
        ),
        (
            b'{"name": "a", "image": "b", "on_disconnect": {"stop_after_seconds": "5"}}',
            "on_disconnect.stop_after_seconds",
        ),
    ],
)
def test_bad_fields_are_refused_by_name(body: bytes, named: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(SPEC, body)
    fields = [part.split(":")[0] for part in caught.value.reason.split("; ")]
    assert any(field == named or field.startswith(f"{named}.") for field in fields), fields


def test_on_disconnect_takes_a_stop_after_from_1_s_to_a_day() -> None:
    for seconds in (1, 5.5, 86_400):
        body = json.dumps(
            {"name": "a", "image": "b", "on_disconnect": {"stop_after_seconds": seconds}}
        )
        spec = decode(SPEC, body.encode())
        assert spec.on_disconnect is not None
        assert spec.on_disconnect.stop_after_seconds == seconds
    assert decode(SPEC, b'{"name": "a", "image": "b"}').on_disconnect is None


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(SPEC, b'{"name": "a", "image": 5, "bogus": 1, "cpu": "x"}')
    for field in ("image", "bogus", "cpu"):
        assert field in caught.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "body"),
        (b" " * (MAX_BODY_BYTES + 1), "over the"),
    ],
)
def test_bodies_that_are_not_specs_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(SPEC, body)
    assert reason in caught.value.reason


def test_a_spec_survives_encode_and_decode() -> None:
    spec = TaskSpec(name="a", image="b", memory=parse_bytes("1g"), env={"X": "1"})
    assert decode(SPEC, encode(spec)) == spec


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64m", 64 * 1024**2),
        ("1g", 1024**3),
        ("512Mi", 512 * 1024**2),
        ("100", 100),
        ("1.5k", 1536),
        (7, 7),
    ],
)
def test_sizes_parse_as_docker_reads_them(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


def test_sizes_format_shortly() -> None:
    assert [format_bytes(n) for n in (100, 1536, 64 * 1024**2, 1000 * 1024**2)] == [
        "100B",
        "1.5Ki",
        "64Mi",
        "1000Mi",
    ]


def test_urls_are_redacted_for_logs() -> None:
    from shared.settings import redact

    assert redact("amqp://kube:s3cret@broker:5671/%2F") == "amqp://kube:***@broker:5671/%2F"
    assert redact("amqp://broker/") == "amqp://broker/"
