"""Scheduled jobs, pure (manager/jobs.py): due ticks, catch-up, time zones, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from manager import jobs
from shared.cron import Schedule
from shared.models import JobRecord, SkipReason, TaskRecord, TaskSpec
from shared.states import TaskState

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def job(schedule: str = "*/5 * * * *", **spec: Any) -> JobRecord:
    made = jobs.create(TaskSpec(name="backup", image="img", schedule=schedule, **spec), T0, None)
    return made


def ran(decision_tasks: list[TaskRecord]) -> list[str]:
    return [t.id for t in decision_tasks if t.state == TaskState.PENDING]


def test_the_first_tick_after_creation_runs_once_with_a_deterministic_id() -> None:
    # given a job made at 12:00 that ticks every 5 minutes
    backup = job()
    assert backup.next_tick == T0 + timedelta(minutes=5)
    # when the manager decides at 12:05:01, and nothing is due before
    assert jobs.fire(backup, [], T0 + timedelta(minutes=4)).empty
    decision = jobs.fire(backup, [], T0 + timedelta(minutes=5, seconds=1))
    # then one run starts, named for the tick in UTC, and the job moves past it
    assert ran(decision.tasks) == ["backup-20261126120500"]
    (run,) = decision.tasks
    assert run.job == "backup" and run.spec.schedule is None
    (moved,) = decision.jobs
    assert moved.last_tick == T0 + timedelta(minutes=5)
    assert moved.next_tick == T0 + timedelta(minutes=10)
    assert moved.last_run == "backup-20261126120500"


def test_a_decided_tick_is_never_run_again() -> None:
    backup = job()
    now = T0 + timedelta(minutes=5, seconds=1)
    first = jobs.fire(backup, [], now)
    # deciding again from the advanced job: nothing is due
    assert jobs.fire(first.jobs[0], first.tasks, now + timedelta(seconds=1)).empty
    # deciding again from the old record (a second manager): its run exists, none starts
    again = jobs.fire(backup, first.tasks, now + timedelta(seconds=1))
    assert ran(again.tasks) == []


def test_missed_ticks_are_skipped_without_a_catch_up_window() -> None:
    # given a job whose manager was down from 12:00 to 12:31
    backup = job()
    decision = jobs.fire(backup, [], T0 + timedelta(minutes=31))
    # then nothing runs (12:30 is a minute late), and the six ticks are recorded missed
    assert ran(decision.tasks) == []
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.reason == SkipReason.MISSED and skip.count == 6
    assert skip.tick == T0 + timedelta(minutes=30)
    assert [o.routing_key for o in decision.outgoing] == ["job.skipped"]


def test_a_catch_up_window_runs_the_newest_missed_ticks_oldest_first() -> None:
    backup = job(catch_up=2, concurrency="allow")
    decision = jobs.fire(backup, [], T0 + timedelta(minutes=31))
    assert ran(decision.tasks) == ["backup-20261126122500", "backup-20261126123000"]
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.count == 4 and skip.tick == T0 + timedelta(minutes=20)


def test_an_on_time_tick_runs_beside_the_caught_up_ones() -> None:
    backup = job(catch_up=1, concurrency="allow")
    decision = jobs.fire(backup, [], T0 + timedelta(minutes=30, seconds=2))
    assert ran(decision.tasks) == ["backup-20261126122500", "backup-20261126123000"]
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.count == 4


def test_a_window_wider_than_the_outage_loses_nothing() -> None:
    backup = job(catch_up=100, concurrency="allow")
    decision = jobs.fire(backup, [], T0 + timedelta(minutes=31))
    assert len(ran(decision.tasks)) == 6
    assert decision.jobs[0].last_skip is None


def test_a_long_outage_is_counted_without_listing_every_tick() -> None:
    backup = job("* * * * * *", concurrency="allow")  # every second
    decision = jobs.fire(backup, [], T0 + timedelta(days=2))
    # the ticks of the last 10 s are on time: they run; the older ones are counted
    assert len(ran(decision.tasks)) == 11
    assert ran(decision.tasks)[-1] == "backup-20261128120000"
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.count == jobs.MAX_COUNTED  # counted up to the cap


def every_2s(last: datetime, **spec: Any) -> JobRecord:
    """A job ticking every two seconds whose last decided tick is `last`."""
    made = jobs.create(
        TaskSpec(name="j2", image="img", schedule="*/2 * * * * *", **spec), last, None
    )
    return made.model_copy(update={"last_tick": last})


def test_ticks_on_time_after_a_restart_run_without_a_window() -> None:
    # given a job decided up to 07:11:42 whose manager was down until 07:11:47.3
    last = datetime(2026, 11, 28, 7, 11, 42, tzinfo=UTC)
    j2 = every_2s(last, concurrency="allow", catch_up=0)
    decision = jobs.fire(j2, [], last + timedelta(seconds=5.3))
    # then 07:11:44 (3.3 s late) and 07:11:46 are on time: both run, none is missed
    assert ran(decision.tasks) == ["j2-20261128071144", "j2-20261128071146"]
    (moved,) = decision.jobs
    assert moved.last_skip is None and moved.missed == 0
    assert moved.last_tick == last + timedelta(seconds=4)


def test_the_window_counts_back_from_the_newest_missed_tick_not_the_newest_tick() -> None:
    # given a job decided up to 12:00:00, catch-up 2, its manager down for 17 s
    j2 = every_2s(T0, concurrency="allow", catch_up=2)
    decision = jobs.fire(j2, [], T0 + timedelta(seconds=17.5))
    # then 12:00:08 to :16 are on time (5 runs), and of the missed :02, :04, :06 the
    # newest two run: 7 runs, 1 tick skipped
    assert ran(decision.tasks) == [f"j2-202611261200{s:02d}" for s in (4, 6, 8, 10, 12, 14, 16)]
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.reason == SkipReason.MISSED
    assert skip.count == 1 and skip.tick == T0 + timedelta(seconds=2)


def test_missed_ticks_add_up_over_outages() -> None:
    # given a job with no window, and a run of it that does not end
    first = jobs.fire(job(), [], T0 + timedelta(minutes=5))
    backup = first.jobs[0]
    (running,) = [t.model_copy(update={"state": TaskState.RUNNING}) for t in first.tasks]
    counts = []
    for outage in range(3):
        # when its manager is down across one tick (decided 30 s late: missed)
        tick = T0 + timedelta(minutes=10 * (outage + 1))
        backup = jobs.fire(backup, [running], tick + timedelta(seconds=30)).jobs[0]
        assert backup.last_skip is not None and backup.last_skip.reason == SkipReason.MISSED
        counts.append(backup.last_skip.count)
        # and the next tick, on time, finds the run going: forbid skips it
        backup = jobs.fire(backup, [running], tick + timedelta(minutes=5, seconds=1)).jobs[0]
        assert backup.last_skip is not None
        assert backup.last_skip.reason == SkipReason.STILL_RUNNING
    # then the count of missed ticks grows with each outage, kept across other skips
    assert counts == [1, 2, 3]
    assert backup.missed == 3


def test_forbid_skips_a_tick_while_the_previous_run_lasts() -> None:
    backup = job()
    first = jobs.fire(backup, [], T0 + timedelta(minutes=5))
    (running,) = [t.model_copy(update={"state": TaskState.RUNNING}) for t in first.tasks]
    decision = jobs.fire(first.jobs[0], [running], T0 + timedelta(minutes=10))
    assert ran(decision.tasks) == []
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.reason == SkipReason.STILL_RUNNING
    assert skip.run == running.id and skip.tick == T0 + timedelta(minutes=10)
    # once it ended, the next tick runs
    ended = running.model_copy(update={"state": TaskState.COMPLETED})
    after = jobs.fire(decision.jobs[0], [ended], T0 + timedelta(minutes=15))
    assert ran(after.tasks) == ["backup-20261126121500"]


def test_forbid_runs_only_the_first_of_caught_up_ticks() -> None:
    decision = jobs.fire(job(catch_up=3), [], T0 + timedelta(minutes=31))
    assert ran(decision.tasks) == ["backup-20261126122000"]
    skip = decision.jobs[0].last_skip
    assert skip is not None and skip.reason == SkipReason.STILL_RUNNING


def test_allow_starts_another_run_beside_the_running_one() -> None:
    backup = job(concurrency="allow")
    first = jobs.fire(backup, [], T0 + timedelta(minutes=5))
    running = [t.model_copy(update={"state": TaskState.RUNNING}) for t in first.tasks]
    decision = jobs.fire(first.jobs[0], running, T0 + timedelta(minutes=10))
    assert ran(decision.tasks) == ["backup-20261126121000"]
    assert decision.outgoing and all(o.routing_key != "n1" for o in decision.outgoing)


def test_replace_stops_the_running_one_then_starts() -> None:
    backup = job(concurrency="replace")
    first = jobs.fire(backup, [], T0 + timedelta(minutes=5))
    running = [
        t.model_copy(update={"state": TaskState.RUNNING, "node": "n1", "attempt": 1})
        for t in first.tasks
    ]
    decision = jobs.fire(first.jobs[0], running, T0 + timedelta(minutes=10))
    by_id = {t.id: t for t in decision.tasks}
    assert by_id["backup-20261126120500"].desired_state == "stopped"
    assert by_id["backup-20261126121000"].state == TaskState.PENDING
    assert "n1" in [o.routing_key for o in decision.outgoing]  # the StopTask


def test_ended_runs_beyond_keep_runs_are_forgotten_oldest_first() -> None:
    backup = job(keep_runs=2)
    old = [
        jobs.fire(backup, [], T0 + timedelta(minutes=m))
        .tasks[0]
        .model_copy(update={"state": TaskState.COMPLETED, "created_at": T0 + timedelta(minutes=m)})
        for m in (5, 10, 15)
    ]
    state = backup.model_copy(update={"last_tick": T0 + timedelta(minutes=15)})
    decision = jobs.fire(state, old, T0 + timedelta(minutes=20))
    assert decision.removed.tasks == [old[0].id]


def test_a_zone_ticks_on_its_wall_clock() -> None:
    # 09:00 in Paris is 08:00 UTC in winter
    paris = Schedule("0 9 * * *", "Europe/Paris")
    assert paris.after(T0) == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_a_skipped_hour_runs_at_the_end_of_the_gap() -> None:
    # Paris skips 02:00-03:00 on 2026-03-29: a 02:30 tick runs at 03:00 local (01:00 UTC)
    nightly = Schedule("30 2 * * *", "Europe/Paris")
    day_before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert nightly.after(day_before) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert nightly.after(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == datetime(
        2026, 3, 30, 0, 30, tzinfo=UTC
    )


def test_a_repeated_hour_runs_a_fixed_time_once_and_an_interval_at_each_instant() -> None:
    # Paris repeats 02:00-03:00 on 2026-10-25 (03:00 CEST becomes 02:00 CET)
    nightly = Schedule("30 2 * * *", "Europe/Paris")
    first = nightly.after(datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, and only then
    assert nightly.after(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # an interval runs on the real clock: both 02:30s, an hour apart, with distinct ids
    halves = Schedule("*/30 * * * *", "Europe/Paris")
    at = halves.after(datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    ticks = [at]
    for _ in range(3):
        ticks.append(halves.after(ticks[-1]))
    assert [t.minute for t in ticks] == [30, 0, 30, 0]
    assert ticks[3] - ticks[0] == timedelta(minutes=90)
    assert len({jobs.run_id("halves", t) for t in ticks}) == 4


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"schedule": "every day"}, "5 fields"),
        ({"schedule": "61 * * * *"}, "not a cron expression"),
        ({"schedule": "* * * * * * *"}, "has 7"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"schedule": "* * * * *", "replicas": 2}, "not both"),
        ({"schedule": "* * * * *", "name": "n" * 49}, "at most 48"),
        ({"schedule": "* * * * *", "concurrency": "queue"}, "forbid"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_problem(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TaskSpec(**{"name": "backup", "image": "img", **fields})


def test_submitting_again_keeps_the_decided_ticks() -> None:
    backup = jobs.fire(job(), [], T0 + timedelta(minutes=5)).jobs[0]
    spec = TaskSpec(name="backup", image="img:2", schedule="*/5 * * * *")
    again = jobs.create(spec, T0 + timedelta(minutes=6), backup)
    assert again.last_tick == backup.last_tick and again.last_run == backup.last_run
    assert again.spec.image == "img:2" and again.created_at == T0


def test_a_new_schedule_starts_after_the_change_with_nothing_missed() -> None:
    # given a job that decided 12:05, submitted again at 12:08 to tick every minute
    backup = jobs.fire(job(catch_up=10, concurrency="allow"), [], T0 + timedelta(minutes=5))
    spec = TaskSpec(
        name="backup", image="img", schedule="* * * * *", catch_up=10, concurrency="allow"
    )
    changed = jobs.create(spec, T0 + timedelta(minutes=8), backup.jobs[0])
    assert changed.next_tick == T0 + timedelta(minutes=9)
    # then its first tick runs alone: 12:06 to 12:08 were not its ticks
    decision = jobs.fire(changed, backup.tasks, T0 + timedelta(minutes=9))
    assert ran(decision.tasks) == ["backup-20261126120900"]
    assert decision.jobs[0].last_skip is None
