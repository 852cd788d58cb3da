"""The kept end of ended attempts' output in the store, on each engine (`store_url`):
kept per (task, attempt), bounded to the newest attempts, deleted with the task."""

from __future__ import annotations

from datetime import UTC, datetime

from manager import core
from manager.effects import Decision, Removal
from manager.store import Store
from shared.kept import KEEP_ATTEMPTS, KeptLogs
from shared.messages import KEPT_OUTPUT_BYTES
from shared.models import TaskSpec

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def kept(attempt: int, stdout: str = "", exit_code: int | None = None) -> KeptLogs:
    return KeptLogs(
        task_id="t1",
        attempt=attempt,
        node="n1",
        exit_code=exit_code,
        at=NOW,
        stdout=stdout,
        stderr=f"error of attempt {attempt}\n",
    )


def a_task(store: Store) -> None:
    store.record(core.accept(TaskSpec(name="a", image="b"), "t1", NOW))


def test_kept_output_is_kept_per_attempt_and_survives_reopening(store_url: str) -> None:
    # given a task with the output of two ended attempts kept
    store = Store(store_url)
    a_task(store)
    store.keep_output(kept(1, "one\n", 3))
    store.keep_output(kept(2, "two\n\u00e9\x00end\n", 1))
    store.close()
    # when the store is opened again
    store = Store(store_url)
    # then each attempt's output reads back, the newest by default (NUL made readable)
    assert store.kept_output("t1", 1) == kept(1, "one\n", 3)
    newest = store.kept_output("t1")
    assert newest is not None and newest.attempt == 2
    assert newest.stdout == "two\n\u00e9\ufffdend\n" and newest.exit_code == 1
    assert newest.stderr == "error of attempt 2\n"
    assert store.kept_exit_codes("t1") == {1: 3, 2: 1}
    assert store.kept_output("t1", 3) is None and store.kept_output("other") is None
    store.close()


def test_a_redelivered_output_is_kept_once_and_keeps_its_exit_code(store_url: str) -> None:
    store = Store(store_url)
    a_task(store)
    # given an attempt's output kept at its exit, with its code
    store.keep_output(kept(1, "exit read\n", 3))
    # when it is read again at its removal (no code known then), and redelivered
    store.keep_output(kept(1, "removal read\n"))
    store.keep_output(kept(1, "removal read\n"))
    store.commit()
    # then one row: the newest read, the exit code kept
    assert store.kept_exit_codes("t1") == {1: 3}
    found = store.kept_output("t1", 1)
    assert found is not None and found.stdout == "removal read\n"
    store.close()


def test_only_the_newest_attempts_are_kept(store_url: str) -> None:
    store = Store(store_url)
    a_task(store)
    # when more attempts end than are kept (a large output each)
    big = "x" * (KEPT_OUTPUT_BYTES - 1) + "\n"
    for attempt in range(1, KEEP_ATTEMPTS + 4):
        store.keep_output(kept(attempt, big, attempt))
    store.commit()
    # then only the newest KEEP_ATTEMPTS remain
    codes = store.kept_exit_codes("t1")
    assert sorted(codes) == list(range(4, KEEP_ATTEMPTS + 4))
    assert store.kept_output("t1", 3) is None
    found = store.kept_output("t1", 4)
    assert found is not None and found.stdout == big
    store.close()


def test_kept_output_goes_with_its_task(store_url: str) -> None:
    store = Store(store_url)
    a_task(store)
    store.record(core.accept(TaskSpec(name="b", image="b"), "t2", NOW))
    store.keep_output(kept(1, "one\n", 3))
    store.keep_output(kept(1, "other\n").model_copy(update={"task_id": "t2"}))
    # when the task is removed (kube rm, or retention's purge)
    store.record(Decision(removed=Removal(tasks=["t1"])))
    store.commit()
    # then its kept output is gone, and the other task's stays
    assert store.kept_output("t1") is None and store.kept_exit_codes("t1") == {}
    assert store.kept_exit_codes("t2") == {1: None}
    store.close()


def test_a_dropped_unit_drops_its_kept_output(store_url: str) -> None:
    store = Store(store_url)
    a_task(store)
    store.commit()
    # when a delivery's unit keeps output, then fails
    store.begin_unit()
    store.keep_output(kept(1, "one\n", 3))
    store.drop_unit()
    store.commit()
    # then nothing of it was kept
    assert store.kept_output("t1") is None
    store.close()
