"""Doing a stack's plan (kube/stack/deploy.py) against a recording stand-in of the client:
which requests go, in which order, and when the deploy waits for a dependency's health."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kube.stack import compose, deploy, loader, plan
from kube.waits import UpdatePaused
from shared.errors import KubeError
from shared.models import Health, ServiceRecord, TaskRecord, TaskSpec, UpdateState
from shared.states import TaskState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FILE = """\
services:
  db: {image: img, healthcheck: {test: [CMD, "true"]}}
  web: {image: img, depends_on: {db: {condition: service_healthy}}}
  worker: {image: img, depends_on: [db]}
"""


class Recorder:
    """The client calls a deploy makes, recorded; the db becomes healthy at the first look
    after it was submitted."""

    def __init__(self, services: list[ServiceRecord] | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.records = {s.name: s for s in services or []}
        self.tasks: list[TaskRecord] = []

    def submit(self, spec: TaskSpec) -> str:
        self.sent.append(("submit", spec.name))
        self.records[spec.name] = ServiceRecord(
            name=spec.name, spec=spec, replicas=1, created_at=NOW, updated_at=NOW
        )
        self.tasks.append(task(spec, Health.HEALTHY))
        return spec.name

    def update(self, name: str, spec: TaskSpec) -> None:
        self.sent.append(("update", name))

    def scale(self, name: str, replicas: int) -> None:
        self.sent.append(("scale", name))

    def remove_job(self, name: str) -> str:
        self.sent.append(("remove_job", name))
        return name

    def service(self, name: str) -> ServiceRecord:
        self.sent.append(("look", name))
        return self.records[name]

    def list(self) -> list[TaskRecord]:
        return self.tasks

    def task_changes(self, timeout: float) -> Generator[None, None, None]:
        yield from [None] * 3


def task(spec: TaskSpec, health: Health | None, version: int = 1) -> TaskRecord:
    return TaskRecord(
        id=f"{spec.name}-1",
        name=spec.name,
        image=spec.image,
        spec=spec,
        service=spec.name,
        version=version,
        state=TaskState.RUNNING,
        health=health,
        created_at=NOW,
        updated_at=NOW,
    )


def stack(tmp_path: Path) -> compose.Stack:
    path = tmp_path / "stack.yaml"
    path.write_text(FILE)
    return compose.stack(loader.read(path, {}), "st", {}, loader.env_file)


def run(client: Recorder, tmp_path: Path, changes: list[plan.Change] | None = None) -> list[str]:
    said: list[str] = []
    s = stack(tmp_path)
    todo = changes if changes is not None else plan.plan(s, [], prune=False)
    deploy.apply(client, s, todo, 5.0, said.append)  # type: ignore[arg-type]
    return said


def test_a_dependent_is_sent_after_its_dependency_was_seen_healthy(tmp_path: Path) -> None:
    client = Recorder()
    said = run(client, tmp_path)
    assert client.sent == [
        ("submit", "st_db"),
        ("look", "st_db"),
        ("submit", "st_web"),
        ("submit", "st_worker"),
    ]
    assert said[1] == "st_web: waiting until st_db is healthy"


def test_nothing_to_change_sends_nothing_and_waits_for_nothing(tmp_path: Path) -> None:
    client = Recorder()
    s = stack(tmp_path)
    unchanged = [plan.Change(x.spec.name, plan.Action.UNCHANGED) for x in s.services]
    run(client, tmp_path, unchanged)
    assert client.sent == []


def test_an_update_and_a_scale_go_as_such(tmp_path: Path) -> None:
    client = Recorder()
    s = stack(tmp_path)
    db, web, worker = (x.spec for x in s.services)
    client.records["st_db"] = ServiceRecord(
        name="st_db", spec=db, replicas=1, created_at=NOW, updated_at=NOW
    )
    client.tasks.append(task(db, Health.HEALTHY))
    changes = [
        plan.Change("st_db", plan.Action.UNCHANGED),
        plan.Change("st_web", plan.Action.UPDATE, spec=web),
        plan.Change("st_worker", plan.Action.SCALE, spec=worker),
    ]
    run(client, tmp_path, changes)
    assert client.sent == [("look", "st_db"), ("update", "st_web"), ("scale", "st_worker")]


def look(client: Any) -> tuple[bool, str]:
    seen = deploy.healthy(client, "st_db")()
    return seen.done, seen.text


def test_healthy_counts_running_healthy_tasks_of_the_current_version(tmp_path: Path) -> None:
    db = stack(tmp_path).services[0].spec
    record = ServiceRecord(name="st_db", spec=db, replicas=1, created_at=NOW, updated_at=NOW)
    client = Recorder([record.model_copy(update={"version": 2})])
    client.tasks = [task(db, Health.HEALTHY, version=1), task(db, Health.STARTING, version=2)]
    assert look(client) == (False, "st_db: 0/1 healthy")
    client.tasks.append(task(db, Health.HEALTHY, version=2))
    assert look(client) == (True, "st_db: 1/1 healthy")


@pytest.mark.parametrize(
    ("changes", "error", "text"),
    [
        ({"replicas": 0}, KubeError, "0 replicas"),
        ({"update_state": UpdateState.PAUSED, "update_error": "boom"}, UpdatePaused, "boom"),
    ],
)
def test_a_dependency_that_cannot_become_healthy_ends_the_wait(
    tmp_path: Path, changes: dict[str, Any], error: type[Exception], text: str
) -> None:
    db = stack(tmp_path).services[0].spec
    record = ServiceRecord(name="st_db", spec=db, replicas=1, created_at=NOW, updated_at=NOW)
    client = Recorder([record.model_copy(update=changes)])
    with pytest.raises(error, match=text):
        deploy.healthy(client, "st_db")()  # type: ignore[arg-type]


def test_a_job_is_submitted_to_create_or_update_and_removed_as_a_job(tmp_path: Path) -> None:
    client = Recorder()
    path = tmp_path / "jobs.yaml"
    path.write_text("services:\n  nightly: {image: i, x-kube: {schedule: '0 3 * * *'}}\n")
    s = compose.stack(loader.read(path, {}), "st", {}, loader.env_file)
    changes = [
        plan.Change("st_nightly", plan.Action.UPDATE, spec=s.services[0].spec, job=True),
        plan.Change("st_old", plan.Action.REMOVE, job=True),
    ]
    said: list[str] = []
    deploy.apply(client, s, changes, 5.0, said.append)  # type: ignore[arg-type]
    assert client.sent == [("submit", "st_nightly"), ("remove_job", "st_old")]
    assert said == ["st_nightly: updated", "st_old: removed"]
