"""The client without a broker: the ids it gives specs, and the requests it builds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kube.client import Client
from shared.codec import encode
from shared.errors import SettingsError
from shared.models import RemoveRequest, Reply, TaskSpec
from shared.settings import Settings
from shared.wire import ID_PATTERN


class StandInRpc:
    """Records each request and answers ok, with the message id as the id."""

    def __init__(self, settings: Settings) -> None:
        self.requests: list[tuple[str, bytes, str | None]] = []

    def request(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        timeout: float | None = None,
        message_id: str | None = None,
    ) -> bytes:
        self.requests.append((routing_key, body, message_id))
        return encode(Reply(ok=True, id=message_id, result={"tasks": [], "services": []}))

    def close(self) -> None:
        pass


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("kube.client.RpcChannel", StandInRpc)
    return Client(Settings())


@pytest.mark.parametrize("replicas", [None, 2])
def test_a_spec_with_the_longest_name_is_sent_with_a_valid_id(
    client: Any, replicas: int | None
) -> None:
    # when a task (or a service) named with 63 characters is submitted without an id
    client.submit(TaskSpec(name="n" * 63, image="busybox", replicas=replicas))
    # then the id the client gave it, in the body and as the message id, is a valid id
    ((key, body, message_id),) = client._rpc.requests
    sent = TaskSpec.model_validate_json(body, strict=True)
    assert key == "task.submit" and sent.id == message_id
    assert message_id is not None and re.match(ID_PATTERN, message_id)


def test_a_removal_names_what_to_remove(client: Any) -> None:
    client.remove(["a", "b"])
    client.remove_ended()
    sent = [(key, RemoveRequest.model_validate_json(body)) for key, body, _ in client._rpc.requests]
    assert sent == [
        ("task.remove", RemoveRequest(ids=("a", "b"))),
        ("task.remove", RemoveRequest(all_ended=True)),
    ]


def test_a_bad_name_to_remove_is_refused_before_it_is_sent(client: Any) -> None:
    bad = r"^not a task id or service name: 'no spaces', '' \(up"
    with pytest.raises(SettingsError, match=bad):
        client.remove(["ok", "no spaces", ""])
    with pytest.raises(SettingsError, match="^not a node name: '-bad' "):
        client.remove_node("-bad")
    with pytest.raises(SettingsError, match="^not a task id or service name: 'x{64}'"):
        client.remove(["x" * 64])
    with pytest.raises(
        SettingsError, match="^not a service name, task id or task name: 'bad name!'"
    ):
        client.endpoints("bad name!")
    assert client._rpc.requests == []


def test_text_that_cannot_be_an_id_is_resolved_without_asking(client: Any) -> None:
    # a name or id start is looked up; text no id can be is left to the request's own check
    assert client.task_ids(["bad name!", ""], services=True) == ["bad name!", ""]
    assert client._rpc.requests == []


def test_an_id_the_manager_knows_is_kept_after_one_small_query(client: Any) -> None:
    # the stand-in answers every query: the text is a task's id, and nothing is listed
    assert client.task_id("web-1a", services=True) == "web-1a"
    assert [key for key, _, _ in client._rpc.requests] == ["query.task"]
