"""The parts of a wait that need no cluster: the plain progress lines, the sentence Ctrl-C
and a timeout end with, --wait-timeout's bounds, and the `stopping` state shown."""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kube import waits
from kube.arguments import seconds
from kube.client import Client
from kube.progress import Progress, WaitInterrupted, Work, interruptible
from kube.render import state
from shared.models import TaskRecord, TaskSpec
from shared.states import TaskState


def test_off_a_terminal_each_change_is_one_plain_line() -> None:
    # given a progress display writing to a pipe
    out = io.StringIO()
    # when the wait shows the same text twice, then another
    with Progress(out, terminal=False) as progress:
        progress.show("web: 1/3 running")
        progress.show("web: 1/3 running")
        progress.show("web: 2/3 running")
    # then each change is one line, with no control characters
    assert out.getvalue() == "  web: 1/3 running\n  web: 2/3 running\n"


def test_ctrl_c_in_a_wait_names_the_work_and_how_to_follow_it() -> None:
    work = Work("the stop of web-1", check="kube ps", stop="kube stop web-1")
    with pytest.raises(WaitInterrupted) as caught, interruptible(work):
        raise KeyboardInterrupt
    assert str(caught.value) == (
        "stopped waiting; the stop of web-1 carries on in the cluster"
        " (check: `kube ps`; stop: `kube stop web-1`)"
    )


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon"])
def test_a_wait_timeout_is_a_number_of_seconds_above_0(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        seconds(text)


def record(state_: TaskState, desired: str) -> TaskRecord:
    now = datetime.now(UTC)
    spec = TaskSpec(name="web", image="busybox")
    return TaskRecord(
        id="web-1",
        name="web",
        state=state_,
        desired_state=desired,
        image="busybox",
        created_at=now,
        updated_at=now,
        spec=spec,
    )


@pytest.mark.parametrize(
    ("recorded", "desired", "shown"),
    [
        (TaskState.RUNNING, "stopped", "stopping"),
        (TaskState.SCHEDULED, "stopped", "stopping"),
        (TaskState.RUNNING, "running", "running"),
        (TaskState.COMPLETED, "stopped", "stopped"),  # ended by the stop asked for
        (TaskState.COMPLETED, "running", "completed"),  # ended on its own
        (TaskState.PENDING, "running", "pending"),
    ],
)
def test_a_task_asked_to_stop_whose_container_runs_shows_stopping(
    recorded: TaskState, desired: str, shown: str
) -> None:
    assert state(record(recorded, desired)) == shown


class Stream:
    """A stand-in for the events stream: the given messages (None: a quiet 0.2 s)."""

    def __init__(self, messages: list[object | None]) -> None:
        self.messages = messages
        self.closed = False

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def __iter__(self) -> Iterator[object | None]:
        return iter(self.messages)


@pytest.mark.parametrize(("every", "cues"), [(0.0, 2), (3600.0, 1)])
def test_a_burst_of_task_changes_is_one_cue_to_look_again(every: float, cues: int) -> None:
    # given two task events and then quiet
    stream = Stream([object(), object(), None, None])
    # when the changes are followed, at most one cue every `every` seconds
    changes = Client._changes(stream, time.monotonic() + 60, every)  # type: ignore[arg-type]
    # then each change is a cue, or the first of a burst within `every` is the only one
    assert len(list(changes)) == cues
    assert stream.closed


def test_scaling_down_shows_the_target_not_running_over_it() -> None:
    # when more run than a service scales down to, the display says so, not "3/1"
    assert waits.scale_text(3, 1) == "3 running, scaling down to 1"
    # and on the way up, it counts toward the target
    assert waits.scale_text(2, 3) == "2/3 running"
