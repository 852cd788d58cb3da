"""Generated task ids: valid on the wire and in Docker's names for every accepted name."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from shared.ids import new_task_id
from shared.models import TaskSpec
from shared.wire import ID_PATTERN, MAX_ID_LENGTH
from worker.runtime.base import container_name

DOCKER_NAME = r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"
"""What the Docker engine accepts as a container name (daemon/names: RestrictedNamePattern)."""

names = st.from_regex(ID_PATTERN, fullmatch=True)


@given(names)
def test_an_id_made_for_any_accepted_name_is_a_valid_id(name: str) -> None:
    # given a name the spec accepts (up to 63 characters)
    TaskSpec(name=name, image="busybox")
    # when an id is made for it
    task_id = new_task_id(name)
    # then the id fits the id alphabet and length, and starts with as much of the name as fits
    assert re.match(ID_PATTERN, task_id) and len(task_id) <= MAX_ID_LENGTH
    assert task_id.startswith(name[:54])
    # and the container name a worker derives from it suits Docker, for a node name of 63
    assert re.match(DOCKER_NAME, container_name("n" * 63, task_id, 10_000))


def test_ids_made_for_the_longest_name_differ() -> None:
    ids = {new_task_id("x" * 63) for _ in range(1000)}
    assert len(ids) == 1000
    assert {len(i) for i in ids} == {MAX_ID_LENGTH}
