"""The transition table."""

from __future__ import annotations

import itertools

from shared.states import TRANSITIONS, TaskState, can_transition


def test_the_books_happy_path_is_allowed() -> None:
    path = [TaskState.PENDING, TaskState.SCHEDULED, TaskState.RUNNING, TaskState.COMPLETED]
    assert all(can_transition(a, b) for a, b in itertools.pairwise(path))


def test_ended_tasks_never_move() -> None:
    for end, other in itertools.product([TaskState.COMPLETED, TaskState.FAILED], TaskState):
        assert not can_transition(end, other)


def test_running_cannot_go_back_to_scheduled() -> None:
    assert not can_transition(TaskState.RUNNING, TaskState.SCHEDULED)


def test_a_restart_goes_back_to_pending_and_a_lost_task_can_restart() -> None:
    assert can_transition(TaskState.RUNNING, TaskState.PENDING)
    assert can_transition(TaskState.RUNNING, TaskState.LOST)
    assert can_transition(TaskState.LOST, TaskState.PENDING)
    assert not can_transition(TaskState.LOST, TaskState.RUNNING)


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(TaskState)
