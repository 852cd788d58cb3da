"""An attempt's transitions, as data: events in, effects out; no engine, no bus."""

from __future__ import annotations

from shared.images import ImageProblem
from shared.models import Health
from shared.specs import HealthCheck, TaskSpec
from shared.states import TaskState
from worker.attempt import (
    Attempt,
    Phase,
    Remove,
    Report,
    Settle,
    Start,
    StartFailed,
    Unwatch,
    Watch,
)
from worker.runtime.base import ContainerExit, ContainerInfo, ContainerStatus

KEY = ("t1", 1)
CHECK = HealthCheck(exec=("check",))
SPEC = TaskSpec(name="web", image="b")
CHECKED = TaskSpec(name="web", image="b", health_check=CHECK)
RUNNING = ContainerInfo("t1", 1, "c1", ContainerStatus.RUNNING, host_ports={"80": 40000})
ALIVE = Report(TaskState.RUNNING, container_id="c1", host_ports={"80": 40000})


def started(spec: TaskSpec = SPEC) -> Attempt[str]:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(spec, "run")
    attempt.started(RUNNING)
    return attempt


def test_a_run_starts_the_container_and_is_acked_after_its_report() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    assert attempt.run(SPEC, "run") == [Start(SPEC)]
    assert attempt.phase == Phase.STARTING
    assert attempt.started(RUNNING) == [ALIVE, Settle("run")]
    assert (attempt.phase, attempt.alive) == (Phase.RUNNING, True)


def test_a_stop_during_the_start_is_held_then_applied() -> None:
    # given an attempt starting, when its stop arrives
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(SPEC, "run")
    assert attempt.stop("stop") == []
    assert attempt.stop_held and attempt.phase == Phase.STARTING
    # then once started, it reports the start, removes the container and acks the stop
    assert attempt.started(RUNNING) == [ALIVE, Settle("run"), Remove(), Settle("stop")]
    # and once removed, it completes
    assert attempt.removed() == [Report(TaskState.COMPLETED)]
    assert attempt.ended


def test_a_stop_held_over_a_failed_start_cleans_up_and_reports_nothing_more() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(SPEC, "run")
    attempt.stop("stop")
    failed = Report(TaskState.FAILED, error="no such image")
    cleanup = [failed, Settle("run"), Remove(), Settle("stop")]
    assert attempt.started(StartFailed("no such image")) == cleanup
    assert attempt.removed() == []
    assert attempt.ended


def test_a_health_checked_start_reports_starting_and_is_watched_unless_stopping() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(CHECKED, "run")
    checking = Report(
        TaskState.RUNNING, container_id="c1", host_ports={"80": 40000}, health=Health.STARTING
    )
    assert attempt.started(RUNNING) == [checking, Watch(CHECK), Settle("run")]
    held: Attempt[str] = Attempt(KEY)
    held.run(CHECKED, "run")
    held.stop("stop")
    assert Watch(CHECK) not in held.started(RUNNING)


def test_an_exit_that_overtakes_the_start_is_reported_after_it() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(SPEC, "run")
    assert attempt.exited(ContainerExit("t1", 1, "c1", 3)) == []
    failed = Report(TaskState.FAILED, container_id="c1", exit_code=3, error="exited with code 3")
    assert attempt.started(RUNNING) == [ALIVE, Settle("run"), failed]
    assert attempt.ended


def test_an_unhealthy_container_is_reported_then_removed_then_failed() -> None:
    attempt = started(CHECKED)
    unhealthy = attempt.health_changed(Health.UNHEALTHY, "exec exited 1")
    assert unhealthy[0].state == TaskState.RUNNING  # type: ignore[union-attr]
    assert unhealthy[1:] == [Unwatch(), Remove()]
    # the die event of its own removal is not a crash
    assert attempt.exited(ContainerExit("t1", 1, "c1", 137)) == []
    assert attempt.removed() == [
        Report(
            TaskState.FAILED,
            error="unhealthy: exec exited 1",
            health=Health.UNHEALTHY,
            last_check="exec exited 1",
        )
    ]
    assert attempt.ended


def test_a_health_change_after_the_attempt_moved_on_is_ignored() -> None:
    attempt = started(CHECKED)
    attempt.stop("stop")
    assert attempt.health_changed(Health.UNHEALTHY, "late") == []


def test_a_failed_removal_keeps_the_container_running_and_a_repeated_stop_retries() -> None:
    attempt = started()
    assert attempt.stop("stop") == [Remove(), Settle("stop")]
    assert attempt.removed("engine error") == []
    assert (attempt.phase, attempt.alive) == (Phase.RUNNING, True)
    assert attempt.stop("again") == [Remove(), Settle("again")]


def test_a_failed_removal_of_a_container_that_exited_meanwhile_reports_the_exit() -> None:
    attempt = started()
    attempt.stop("stop")
    attempt.exited(ContainerExit("t1", 1, "c1", 0))
    done = Report(TaskState.COMPLETED, container_id="c1", exit_code=0)
    assert attempt.removed("engine error") == [done]
    assert attempt.ended


def test_a_stop_for_an_unknown_attempt_removes_quietly() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    assert attempt.stop("stop") == [Remove(), Settle("stop")]
    assert attempt.removed() == []
    assert attempt.ended


def test_a_stop_is_acked_once_the_removal_begins_and_a_repeated_one_at_once() -> None:
    # a removal waits out the grace period: a stop held unacked that long would keep the
    # next stops in the queue (the prefetch), and their grace periods would add up
    attempt = started()
    assert attempt.stop("stop") == [Remove(), Settle("stop")]
    assert attempt.stop("again") == [Settle("again")]
    assert attempt.removed() == [Report(TaskState.COMPLETED)]


def test_a_repeated_run_is_answered_with_what_is_known() -> None:
    attempt = started()
    assert attempt.run(SPEC, "again") == [ALIVE, Settle("again")]
    attempt.stop("stop")
    assert attempt.run(SPEC, "late") == [Settle("late")]


def test_reconciliation_adopts_a_running_container_and_reports_an_ended_one() -> None:
    adopted: Attempt[str] = Attempt(KEY)
    checked = ContainerInfo("t1", 1, "c1", ContainerStatus.RUNNING, health_check=CHECK)
    report = Report(TaskState.RUNNING, container_id="c1", health=Health.STARTING)
    assert adopted.adopt(checked) == [report, Watch(CHECK)]
    assert adopted.phase == Phase.RUNNING
    ended: Attempt[str] = Attempt(KEY)
    exited = ContainerInfo("t1", 1, "c1", ContainerStatus.EXITED, exit_code=0)
    assert ended.adopt(exited) == [Report(TaskState.COMPLETED, container_id="c1", exit_code=0)]
    assert ended.ended


def test_a_running_container_gone_from_the_engine_is_forgotten_quietly() -> None:
    attempt = started(CHECKED)
    assert attempt.vanished() == [Unwatch()]
    assert attempt.ended


def test_a_stop_before_the_inventory_holds_a_container_listed_running_until_removed() -> None:
    # given a stop for an attempt the (restarted) worker does not know yet
    attempt: Attempt[str] = Attempt(KEY)
    assert attempt.stop("stop") == [Remove(), Settle("stop")]
    # when the inventory then lists its container running
    assert attempt.adopt(RUNNING) == []
    # then it is held as running until removed, and then completes
    assert attempt.alive and attempt.last.container_id == "c1"
    assert attempt.removed() == [Report(TaskState.COMPLETED)]


CUT = Report(
    TaskState.FAILED, error="stopped after 10.3s out of touch with the broker", disconnected=10.3
)


def test_a_container_cut_off_is_reported_stopped_for_it_once_removed() -> None:
    # given a running, health-checked attempt
    attempt = started(CHECKED)
    # when the worker, out of touch for 10.3 s, removes its container (already under way)
    assert attempt.cut_off(10.3) == [Unwatch()]
    assert (attempt.phase, attempt.alive) == (Phase.STOPPING, True)
    # then a stop meanwhile is acked, and the removal reports why it happened
    assert attempt.stop("stop") == [Settle("stop")]
    assert attempt.removed() == [CUT]
    assert attempt.ended


def test_a_cut_off_during_the_start_is_applied_once_started() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(SPEC, "run")
    assert attempt.cut_off(10.3) == []
    # the start is reported as it happened, then the attempt waits for the removal
    assert attempt.started(RUNNING) == [ALIVE, Settle("run")]
    assert attempt.phase == Phase.STOPPING
    assert attempt.removed() == [CUT]


def test_a_failed_cut_off_keeps_the_container_running_and_watched() -> None:
    attempt = started(CHECKED)
    attempt.cut_off(10.3)
    assert attempt.removed("engine gone") == [Watch(CHECK)]
    assert (attempt.phase, attempt.alive) == (Phase.RUNNING, True)


def test_a_cut_off_of_an_attempt_being_removed_changes_nothing() -> None:
    attempt = started()
    attempt.stop("stop")
    assert attempt.cut_off(10.3) == []
    assert attempt.removed() == [Report(TaskState.COMPLETED)]


def test_a_start_failed_for_an_image_that_cannot_be_had_reports_the_problem_as_data() -> None:
    attempt: Attempt[str] = Attempt(KEY)
    attempt.run(SPEC, "run")
    why, problem = "image 'x' cannot be pulled", ImageProblem.NO_SUCH_IMAGE
    outcome = StartFailed(why, problem)
    failed = Report(TaskState.FAILED, error=why, image_problem=problem)
    assert attempt.started(outcome) == [failed, Settle("run")]
    assert attempt.ended
