"""What `kube inspect` and `kube services` say about tasks that cannot run."""

from __future__ import annotations

from datetime import UTC, datetime

from kube import render
from manager import core, services
from shared.images import ImageProblem
from shared.models import Health, TaskRecord
from shared.specs import HealthCheck, TaskSpec, TcpCheck
from shared.states import TaskState

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SPEC = TaskSpec(name="svcbad", image="nonexistent.invalid/x:1", replicas=2)


def a_task(**changes: object) -> TaskRecord:
    task = core.accept(SPEC, "svcbad-1", NOW, service="svcbad", version=1).tasks[0]
    return task.model_copy(update=changes)


def test_an_ended_task_wants_nothing_more() -> None:
    failed = render.task(a_task(state=TaskState.FAILED, error="boom"), [])
    assert "desired:     -" in failed.splitlines()
    pending = render.task(a_task(), [])
    assert "desired:     running" in pending.splitlines()


def test_a_service_whose_tasks_cannot_pull_their_image_says_so() -> None:
    service = services.create(SPEC, NOW)
    stuck = a_task(image_problem=ImageProblem.NO_REGISTRY, error="image ... cannot be pulled")
    row = render.services([service], [stuck]).splitlines()[1]
    assert "image cannot be pulled (no-registry): kube inspect svcbad-1" in row
    assert "image cannot" not in render.services([service], [a_task()])


def test_inspect_shows_what_the_health_check_says() -> None:
    checked = a_task(
        spec=SPEC.model_copy(update={"health_check": HealthCheck(tcp=TcpCheck(port=80))})
    )

    def shown(task: TaskRecord) -> str:
        (line,) = [row for row in render.task(task, []).splitlines() if row.startswith("health:")]
        return line

    assert shown(a_task()) == "health:      -"
    assert shown(checked) == "health:      not checked yet"
    healthy = checked.model_copy(update={"health": Health.HEALTHY, "last_check": "tcp 80 open"})
    assert shown(healthy) == "health:      healthy (tcp 80 open)"
    unhealthy = checked.model_copy(update={"health": Health.UNHEALTHY, "last_check": None})
    assert shown(unhealthy) == "health:      unhealthy"
