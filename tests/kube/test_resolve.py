"""Which task a user means (kube/resolve.py), and the `kube ps` filters (kube/ps.py):
pure, over lists of records."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from kube.ps import Filter
from kube.render import state
from kube.resolve import Ambiguous, task_id
from shared.models import TaskRecord, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def task(id: str, name: str, state: TaskState, **fields: object) -> TaskRecord:
    spec = TaskSpec(name=name, image="busybox")
    return TaskRecord.model_validate(
        {"id": id, "name": name, "image": "busybox", "spec": spec, "state": state}
        | {"created_at": NOW, "updated_at": NOW, **fields}
    )


TASKS = [
    task("hello-1a2b3c4d", "hello", TaskState.COMPLETED),
    task("hello-9f8e7d6c", "hello", TaskState.RUNNING, node="n1"),
    task("job-1a2b3c4d", "job", TaskState.FAILED, node="n2"),
    task("web-aaaa1111", "web", TaskState.RUNNING, node="n1", service="web"),
    task("web-aaaa2222", "web", TaskState.PENDING, service="web"),
]


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("job-1a2b3c4d", "job-1a2b3c4d"),  # an id
        ("hello-1a2b3c4d", "hello-1a2b3c4d"),  # an id, even of an ended task
        ("hello", "hello-9f8e7d6c"),  # a name: the one task of it not ended
        ("job", "job-1a2b3c4d"),  # a name: the one task of it
        ("hello-9", "hello-9f8e7d6c"),  # the start of one id
        ("web-aaaa1", "web-aaaa1111"),
        ("nothing", "nothing"),  # unknown: left for the manager to say so
    ],
)
def test_a_task_is_meant_by_its_id_its_name_or_the_start_of_its_id(text: str, meant: str) -> None:
    assert task_id(text, TASKS) == meant


def test_a_name_of_several_ended_tasks_means_the_newest_and_says_so() -> None:
    # given a name run three times, each run ended, the newest not last in the list
    runs = [
        task("job-00000001", "job", TaskState.COMPLETED, created_at=NOW.replace(hour=1)),
        task("job-00000003", "job", TaskState.FAILED, created_at=NOW.replace(hour=3)),
        task("job-00000002", "job", TaskState.COMPLETED, created_at=NOW.replace(hour=2)),
    ]
    said: list[str] = []
    # then the name means the newest run, and the choice is said
    assert task_id("job", runs, said=said.append) == "job-00000003"
    assert said == ["'job' names 3 ended tasks; taking the newest, job-00000003 (failed,"
                    " created 2026-11-28 03:00:00)"]  # fmt: skip


def test_a_service_name_is_kept_where_a_service_is_accepted() -> None:
    assert task_id("web", TASKS, services={"web"}) == "web"


@pytest.mark.parametrize(
    ("text", "candidates"),
    [
        ("web", ("web-aaaa1111", "web-aaaa2222")),  # two live tasks of that name
        ("web-aaaa", ("web-aaaa1111", "web-aaaa2222")),  # the start of two ids
        ("hello-", ("hello-1a2b3c4d", "hello-9f8e7d6c")),
    ],
)
def test_text_that_names_several_tasks_is_refused_naming_them(
    text: str, candidates: tuple[str, ...]
) -> None:
    with pytest.raises(Ambiguous) as refused:
        task_id(text, TASKS)
    assert refused.value.candidates == candidates
    said = str(refused.value)
    assert said.startswith(f"{text!r} names 2 tasks: ") and "\n" not in said
    assert all(c in said for c in candidates) and said.endswith("give one id")


def test_an_ambiguity_names_five_candidates_and_counts_the_rest() -> None:
    many = [task(f"x-{i:08x}", "x", TaskState.RUNNING) for i in range(8)]
    with pytest.raises(Ambiguous, match=r"x-00000004 \(running\) and 3 more; give one id$"):
        task_id("x", many)


def ps_args(*argv: str) -> argparse.Namespace:
    from kube.cli import build_parser

    return build_parser().parse_args(["ps", *argv])


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        ((), {"hello-9f8e7d6c", "web-aaaa1111", "web-aaaa2222"}),
        (("-a",), {t.id for t in TASKS}),
        (("--state", "failed"), {"job-1a2b3c4d"}),  # a state shows ended tasks
        (("--state", "failed", "--state", "pending"), {"job-1a2b3c4d", "web-aaaa2222"}),
        (("--node", "n1"), {"hello-9f8e7d6c", "web-aaaa1111"}),
        (
            ("-a", "--node", "n2", "--node", "n1"),
            {"hello-9f8e7d6c", "web-aaaa1111", "job-1a2b3c4d"},
        ),
        (("--service", "web", "--node", "n1"), {"web-aaaa1111"}),
        (("--service", "nothing"), set()),
    ],
)
def test_ps_hides_ended_tasks_and_filters_by_state_node_and_service(
    argv: tuple[str, ...], shown: set[str]
) -> None:
    assert {t.id for t in Filter.from_args(ps_args(*argv)).apply(TASKS)} == shown


def test_ps_filters_by_every_state_a_task_shows() -> None:
    # given a task whose container is stopping, and one that ended because it was stopped
    asked = {"desired_state": "stopped"}
    tasks = [
        *TASKS,
        task("slow-00000001", "slow", TaskState.RUNNING, node="n1", **asked),
        task("done-00000001", "done", TaskState.COMPLETED, node="n1", **asked),
    ]
    # then each shows as such, and --state takes those states too
    shown = {t.id: state(t) for t in tasks}
    assert (shown["slow-00000001"], shown["done-00000001"]) == ("stopping", "stopped")
    assert shown["hello-1a2b3c4d"] == "completed"  # ended on its own
    stopping = Filter.from_args(ps_args("--state", "stopping")).apply(tasks)
    assert [t.id for t in stopping] == ["slow-00000001"]
    stopped = Filter.from_args(ps_args("--state", "stopped")).apply(tasks)
    assert [t.id for t in stopped] == ["done-00000001"]
    with pytest.raises(SystemExit):
        ps_args("--state", "nonsense")
