"""Ports in a TaskSpec: a plain container port, or a mapping to a fixed host port."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from shared.codec import decode
from shared.errors import DecodeError
from shared.specs import PortMapping, TaskSpec

SPEC = TypeAdapter(TaskSpec)


def test_both_forms_decode_and_normalise_to_mappings() -> None:
    # given a spec with a plain port, a mapping without a host port and one with it
    body = (
        b'{"name": "web", "image": "b", "ports":'
        b' [80, {"container": 81}, {"container": 82, "host": 8082}]}'
    )

    # when it is decoded
    spec = decode(SPEC, body)

    # then the plain form stays as given, and both read as mappings
    assert spec.ports == (80, PortMapping(container=81), PortMapping(container=82, host=8082))
    assert spec.published() == (
        PortMapping(container=80),
        PortMapping(container=81),
        PortMapping(container=82, host=8082),
    )
    assert spec.fixed_host_ports() == (8082,)


def test_the_old_form_encodes_as_it_was_given() -> None:
    spec = decode(SPEC, b'{"name": "web", "image": "b", "ports": [8080]}')
    assert spec.model_dump(mode="json")["ports"] == [8080]


@pytest.mark.parametrize(
    ("ports", "says"),
    [
        (b"[80, 80]", "each container port may be listed once (80 twice)"),
        (b'[80, {"container": 80, "host": 9000}]', "each container port may be listed once"),
        (
            b'[{"container": 80, "host": 9000}, {"container": 81, "host": 9000}]',
            "each host port may be listed once (9000 twice)",
        ),
        (b'[{"container": 80, "host": 0}]', "ports.0.host: must be greater"),
        (b'[{"container": 80, "host": 65536}]', "ports.0.host: must be less"),
        (b'[{"container": 80, "host": "8080"}]', "ports.0.host: must be a valid integer"),
        (b'[{"host": 8080}]', "ports.0.container: missing (it is required)"),
        (b'[{"container": 80, "hostport": 1}]', "ports.0.hostport"),
        (b'["80"]', "ports.0: must be a valid integer"),
        (
            b"[" + b", ".join(b"%d" % p for p in range(1, 258)) + b"]",
            "ports: Tuple should have at most 256 items",
        ),
    ],
)
def test_bad_ports_are_refused_naming_the_problem(ports: bytes, says: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(SPEC, b'{"name": "web", "image": "b", "ports": ' + ports + b"}")
    assert says in caught.value.reason
