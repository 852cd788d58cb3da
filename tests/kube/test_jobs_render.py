"""`kube jobs` and `kube events` lines about jobs, rendered from records (kube/jobs_cli.py,
kube/events.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kube.client import Event
from kube.events import event_json, event_line
from kube.jobs_cli import render_jobs
from manager import jobs
from shared.codec import encode
from shared.models import JobRecord, JobRow, SkippedTicks, SkipReason, TaskSpec
from shared.states import TaskState

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def backup() -> JobRecord:
    spec = TaskSpec(name="backup", image="img", schedule="*/5 * * * *", timezone="Europe/Paris")
    return jobs.fire(jobs.create(spec, T0, None), [], T0 + timedelta(minutes=5)).jobs[0]


def test_kube_jobs_shows_the_schedule_the_last_run_its_state_and_the_next_run() -> None:
    table = render_jobs([JobRow(job=backup(), last_run_state=TaskState.RUNNING)])
    header, row = table.splitlines()
    assert header.split()[:4] == ["NAME", "SCHEDULE", "TZ", "CONCURRENCY"]
    assert "*/5 * * * *" in row and "Europe/Paris" in row and "forbid" in row
    assert "backup-20261126120500 (running)" in row and "2026-11-26 12:10:00Z" in row


def test_a_skipped_tick_is_a_sentence_in_kube_jobs_and_kube_events() -> None:
    skip = SkippedTicks(tick=T0, reason=SkipReason.STILL_RUNNING, run="backup-1")
    job = backup().model_copy(update={"last_skip": skip})
    assert "backup-1 was still running" in render_jobs([JobRow(job=job)])
    event = Event.decode("job.skipped", encode(job))
    assert event_line(event) is not None
    assert "job backup skipped: 2026-11-26 12:00:00Z: backup-1 was still running" in str(
        event_line(event)
    )
    missed = job.model_copy(
        update={"last_skip": SkippedTicks(tick=T0, reason=SkipReason.MISSED, count=12)}
    )
    assert "12 ticks missed while no manager ran" in render_jobs([JobRow(job=missed)])
    assert '"job": {"name": "backup"' in event_json(event)
