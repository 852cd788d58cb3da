"""`kube endpoints` and `kube events` show where a service answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from kube import render
from kube.client import Event
from kube.events import clock, event_json, event_line
from shared.codec import encode
from shared.models import ServiceEndpoints

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_endpoints_are_one_a_line_and_none_is_said_in_words() -> None:
    found = ServiceEndpoints(name="web", endpoints=("10.0.0.2:8080", "10.0.0.3:8080"), at=NOW)
    assert render.endpoints(found) == "10.0.0.2:8080\n10.0.0.3:8080"
    empty = ServiceEndpoints(name="web", endpoints=(), at=NOW)
    assert render.endpoints(empty) == "web: no task serves now"


def test_a_service_endpoints_event_decodes_and_reads_as_a_line_and_as_json() -> None:
    # given the body the manager publishes
    body = encode(ServiceEndpoints(name="web", endpoints=("10.0.0.2:8080",), at=NOW))

    # when a watcher decodes it
    event = Event.decode("service.endpoints", body)

    # then it is shown as a line, and as JSON with the same fields
    assert event.endpoints is not None and event.endpoints.endpoints == ("10.0.0.2:8080",)
    assert event_line(event) == f"{clock(NOW)} service web endpoints 10.0.0.2:8080"
    assert json.loads(event_json(event))["endpoints"]["endpoints"] == ["10.0.0.2:8080"]
    none = Event.decode(
        "service.endpoints", encode(ServiceEndpoints(name="web", endpoints=(), at=NOW))
    )
    assert event_line(none) == f"{clock(NOW)} service web endpoints -"


def test_the_wire_contracts_service_endpoints_example_is_a_valid_body() -> None:
    # the example payload under docs/wire-contract.md's "service.endpoints" marker decodes
    readme = (Path(__file__).resolve().parents[2] / "docs" / "wire-contract.md").read_text()
    after = readme.split("<!-- example: service.endpoints -->", 1)[1]
    block = after.split("```json", 1)[1].split("```", 1)[0]
    found = ServiceEndpoints.model_validate_json(block, strict=True)
    assert found.name == "web" and found.endpoints == ("10.0.0.2:32768", "10.0.0.3:32771")
