"""`kube events` shows the `manager.leader` events the leader publishes on kube.events."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

from kube import events
from kube.client import Event
from shared.codec import encode
from shared.models import ManagerInfo, ManagerRole

INFO = ManagerInfo(
    name="m2",
    host="host-a",
    pid=4242,
    role=ManagerRole.LEADER,
    epoch=7,
    since=datetime(2026, 1, 1, tzinfo=UTC),
    seen_ago=0.0,
)


class Watching:
    """A client whose live feed is one manager.leader event, if bound to its key."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def watch(self, keys: list[str]) -> Iterator[Event]:
        self.keys = keys
        if any(k.startswith("manager.") for k in keys):
            yield Event.decode(events.LEADER, encode(INFO))

    def managers(self) -> list[ManagerInfo]:
        return [INFO, INFO.model_copy(update={"name": "m3", "role": ManagerRole.STANDBY})]

    def nodes(self) -> list[object]:
        return []

    def list(self) -> list[object]:
        return []


def test_a_leader_event_is_decoded_and_shown_as_a_line() -> None:
    event = Event.decode("manager.leader", encode(INFO))
    line = events.event_line(event)
    assert line is not None and "manager m2 leads (epoch 7, pid 4242 on host-a)" in line


def test_follow_binds_the_leader_key_and_prints_it_as_json() -> None:
    client, out = Watching(), io.StringIO()
    events.run(client, follow=True, as_json=True, out=out)  # type: ignore[arg-type]
    (line,) = out.getvalue().splitlines()
    data = json.loads(line)
    assert data["key"] == "manager.leader" and data["manager"]["name"] == "m2"


def test_the_snapshot_starts_with_the_leader() -> None:
    out = io.StringIO()
    events.run(Watching(), out=out)  # type: ignore[arg-type]
    assert out.getvalue().splitlines()[0].endswith("manager m2 leads (epoch 7, pid 4242 on host-a)")
