"""Scheduled jobs, pure: which ticks are due, and what each does (docs/jobs.md).

A job is a spec with a `schedule`. At each tick the manager starts a run: a task named
after the job, whose id is the job's name and the tick in UTC (`run_id`). The run is
created in the same decision, so in the same store transaction, that moves the job's
`last_tick` past the tick: a manager killed before the commit left neither, and decides
the tick again; killed after, it finds the tick decided. Run ids are deterministic, so a
tick decided twice anyway (two managers) would make no second run.

Due ticks are those after `last_tick` (or the job's creation) up to now. Each one at most
ON_TIME late is on time and runs; older ones were missed while the manager was down, and
the newest `catch_up` of them run, oldest first; the others are skipped as missed, and
added to the job's count of missed ticks (`JobRecord.missed`, over all outages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from manager import core, removal
from manager.effects import Decision, Outgoing
from shared import topology
from shared.codec import encode
from shared.cron import Concurrency, Schedule
from shared.models import JobRecord, SkippedTicks, SkipReason, TaskRecord, TaskSpec

ON_TIME = timedelta(seconds=10)
"""How late a tick may be decided and still run without a catch-up window: the manager
decides ticks on its timer (every second), which a busy batch may delay."""

MAX_COUNTED = 10_000
"""Missed ticks counted one by one; past that the count says at least this many."""

JOB_EVENT = "job.{what}"
"""Routing keys on kube.events: job.created, job.skipped, job.removed (a JobRecord)."""


def schedule_of(spec: TaskSpec) -> Schedule:
    assert spec.schedule is not None
    return Schedule(spec.schedule, spec.timezone)


def run_id(job: str, tick: datetime) -> str:
    """The id of the job's run at this tick: the same on every manager, at every try."""
    return f"{job}-{tick.astimezone(UTC):%Y%m%d%H%M%S}"


def run_spec(job: JobRecord) -> TaskSpec:
    """The spec each run of the job runs: the job's, without what makes it a job."""
    return job.spec.model_copy(update={"id": None, "schedule": None})


def create(spec: TaskSpec, now: datetime, existing: JobRecord | None) -> JobRecord:
    """A new job from a spec with a schedule; submitted again, the job takes the new spec
    and keeps the ticks it decided (none runs twice). A new schedule (or zone) starts
    after now: its ticks before the change were never the job's, so none is missed."""
    spec = spec.model_copy(update={"id": None})
    last = existing.last_tick if existing is not None else None
    if existing is not None and _when(existing.spec) != _when(spec):
        last = max(last or now, now)
    return JobRecord(
        name=spec.name,
        spec=spec,
        last_tick=last,
        next_tick=schedule_of(spec).after(max(last or now, now)),
        last_run=existing.last_run if existing is not None else None,
        last_skip=existing.last_skip if existing is not None else None,
        created_at=existing.created_at if existing is not None else now,
        updated_at=now,
    )


def _when(spec: TaskSpec) -> tuple[str | None, str]:
    return (spec.schedule, spec.timezone)


@dataclass(frozen=True)
class Due:
    """The ticks a job has to decide now."""

    run: list[datetime] = field(default_factory=list)  # to run, oldest first
    missed: int = 0  # missed and past the catch-up window: skipped
    newest_missed: datetime | None = None
    last: datetime | None = None  # the newest tick decided, now


def due(job: JobRecord, now: datetime) -> Due:
    """The ticks after the job's last decided tick (or its creation) up to now. Each tick
    at most ON_TIME old is on time and runs, whatever the window; of the older ones (missed),
    the newest `catch_up` run and the others are skipped, counted."""
    schedule = schedule_of(job.spec)
    since = job.last_tick or job.created_at
    on_time: list[datetime] = []  # newest first
    tick = schedule.before(now + timedelta(microseconds=1))  # a tick at `now` is due
    while tick > since and now - tick <= ON_TIME:
        on_time.append(tick)
        tick = schedule.before(tick)
    caught: list[datetime] = []  # newest first
    while tick > since and len(caught) < job.spec.catch_up:
        caught.append(tick)
        tick = schedule.before(tick)
    collected = on_time + caught
    oldest = collected[-1] if collected else schedule.after(now)
    missed = _count(schedule, since, oldest)
    newest_missed = schedule.before(oldest) if missed else None
    return Due(
        run=sorted(collected),
        missed=missed,
        newest_missed=newest_missed,
        last=collected[0] if collected else newest_missed,
    )


def _count(schedule: Schedule, since: datetime, before: datetime) -> int:
    """Ticks strictly between `since` and `before`, up to MAX_COUNTED."""
    count, tick = 0, schedule.after(since)
    while tick < before and count < MAX_COUNTED:  # tick > since: `since` is not counted
        count, tick = count + 1, schedule.after(tick)
    return count


def live(runs: Sequence[TaskRecord]) -> list[TaskRecord]:
    """The runs that have not ended and were not asked to stop."""
    return [r for r in runs if not r.state.terminal and r.desired_state != "stopped"]


def fire(job: JobRecord, runs: Sequence[TaskRecord], now: datetime) -> Decision:
    """Decide the job's due ticks: start runs (new pending tasks, for the manager to
    place), stop runs a `replace` supersedes, record skipped ticks, advance the job."""
    ticks = due(job, now)
    if ticks.last is None:
        return Decision()
    decision = Decision()
    skip = job.last_skip
    if ticks.missed:
        assert ticks.newest_missed is not None
        missed = min(job.missed + ticks.missed, MAX_COUNTED)
        skip = SkippedTicks(tick=ticks.newest_missed, reason=SkipReason.MISSED, count=missed)
        decision.outgoing.append(_skipped(job, skip))
    else:
        missed = job.missed
    running = live(runs)
    last_run = job.last_run
    known = {r.id for r in runs}
    for tick in ticks.run:
        task_id = run_id(job.name, tick)
        if task_id in known:
            continue  # decided already (a duplicate submit, another manager): never twice
        if running and job.spec.concurrency == Concurrency.FORBID:
            skip = SkippedTicks(
                tick=tick, reason=SkipReason.STILL_RUNNING, run=running[-1].id, count=1
            )
            decision.outgoing.append(_skipped(job, skip))
            continue
        if job.spec.concurrency == Concurrency.REPLACE:
            for old in running:
                decision.extend(core.request_stop(old, now))
            running = []
        started = core.accept(run_spec(job), task_id, now, job=job.name)
        decision.extend(started)
        running.extend(started.tasks)
        last_run = task_id
    decision.extend(_retention(job, runs, decision))
    decision.jobs.append(
        job.model_copy(
            update={
                "last_tick": ticks.last,
                "next_tick": schedule_of(job.spec).after(max(ticks.last, now)),
                "last_run": last_run,
                "last_skip": skip,
                "missed": missed,
                "updated_at": now,
            }
        )
    )
    return decision


def _retention(job: JobRecord, runs: Sequence[TaskRecord], decision: Decision) -> Decision:
    """Forget the ended runs beyond the newest `keep_runs` ended ones."""
    stopped = {t.id for t in decision.tasks}
    ended = sorted((r for r in runs if r.state.terminal and r.id not in stopped), key=_age)
    forget = Decision()
    for old in ended[: max(len(ended) - job.spec.keep_runs, 0)]:
        forget.extend(removal.remove_task(old))
    return forget


def _age(run: TaskRecord) -> tuple[datetime, str]:
    return (run.created_at, run.id)


def _skipped(job: JobRecord, skip: SkippedTicks) -> Outgoing:
    body = job.model_copy(update={"last_skip": skip})
    return Outgoing(topology.EVENTS, JOB_EVENT.format(what="skipped"), encode(body))


def job_event(job: JobRecord, what: str) -> Outgoing:
    return Outgoing(topology.EVENTS, JOB_EVENT.format(what=what), encode(job))


def remove(job: JobRecord, runs: Sequence[TaskRecord], now: datetime) -> Decision:
    """Forget a job, and stop its runs that have not ended (they stay as tasks)."""
    decision = Decision(outgoing=[job_event(job, "removed")])
    decision.removed.jobs.append(job.name)
    for run in live(runs):
        decision.extend(core.request_stop(run, now))
    return decision
