"""Scheduled jobs in the store, on each engine: a tick's run and the job's advanced last
tick land together or not at all (manager/jobs.py, manager/store/state.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import jobs
from manager.effects import Decision
from manager.store import Store
from shared.models import TaskSpec

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TICK = T0 + timedelta(minutes=5)


def made(store: Store) -> None:
    spec = TaskSpec(name="backup", image="img", schedule="*/5 * * * *")
    store.record(Decision(jobs=[jobs.create(spec, T0, None)]))
    store.commit()


def test_a_tick_and_its_run_are_kept_together(store_url: str) -> None:
    # given a job, and the decision of its first tick, committed
    store = Store(store_url)
    made(store)
    job = store.job("backup")
    assert job is not None and job.last_tick is None
    store.record(jobs.fire(job, store.runs("backup"), TICK))
    store.commit()
    store.close()
    # when the store is opened again
    store = Store(store_url)
    # then the job's last tick and its run are both there
    job = store.job("backup")
    assert job is not None and job.last_tick == TICK
    assert [r.id for r in store.runs("backup")] == ["backup-20261126120500"]
    # and deciding again finds nothing due and starts nothing
    assert jobs.fire(job, store.runs("backup"), TICK + timedelta(seconds=1)).empty
    store.close()


def test_a_tick_not_committed_leaves_neither_and_is_decided_again(store_url: str) -> None:
    store = Store(store_url)
    made(store)
    job = store.job("backup")
    assert job is not None
    store.record(jobs.fire(job, [], TICK))
    store.close(commit=False)  # killed before the commit
    store = Store(store_url)
    job = store.job("backup")
    assert job is not None and job.last_tick is None and store.runs("backup") == []
    again = jobs.fire(job, [], TICK + timedelta(seconds=2))
    assert [t.id for t in again.tasks] == ["backup-20261126120500"]
    store.close()


def test_removing_a_job_forgets_it_and_keeps_its_runs_as_tasks(store_url: str) -> None:
    store = Store(store_url)
    made(store)
    job = store.job("backup")
    assert job is not None
    store.record(jobs.fire(job, [], TICK))
    job = store.job("backup")
    assert job is not None
    store.record(jobs.remove(job, store.runs("backup"), TICK))
    store.commit()
    assert store.job("backup") is None and store.jobs() == []
    (run,) = store.runs("backup")
    assert run.desired_state == "stopped" or run.state.terminal
    store.close()
