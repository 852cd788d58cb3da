"""`kube logs` (kube/logs.py) on stand-in sessions: what it opens, prints and says."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta

import pytest

from kube.arguments import since_time
from kube.logs import LogsFollower, Options, Printer, partial
from kube.sessions import Opened, Received, SessionRefused
from shared.models import TaskRecord, TaskSpec
from shared.sessions import Chunk, EndReason, Fd, LogsParams, StreamEnd, StreamFrame
from shared.states import TaskState

NOW = datetime(2026, 11, 28, 5, 0, 0, tzinfo=UTC)


def record(task_id: str, attempt: int, state: TaskState = TaskState.RUNNING) -> TaskRecord:
    spec = TaskSpec(name="web", image="busybox")
    return TaskRecord.model_validate(
        {
            "id": task_id,
            "name": "web",
            "image": "busybox",
            "spec": spec,
            "state": state,
            "node": "n1",
            "attempt": attempt,
            "service": "web",
            "created_at": NOW,
            "updated_at": NOW,
        }
    )


class FakeSessions:
    """Opens what it is asked, refuses what `refuse` says; gives the frames queued."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int, LogsParams]] = []
        self.frames: list[Received] = []
        self.refuse: dict[str, SessionRefused] = {}

    def open(self, task_id: str, *, logs: LogsParams, attempt: int) -> Opened:
        if task_id in self.refuse:
            raise self.refuse[task_id]
        self.opened.append((task_id, attempt, logs))
        return Opened(f"{len(self.opened):032x}", "n1", task_id, attempt)

    def read(self, timeout: float) -> list[Received]:
        found, self.frames = self.frames, []
        return found

    def give(self, opened: Opened, *lines: str, end: EndReason | None = None) -> None:
        chunks = [
            Chunk(fd=Fd.STDOUT, at=NOW + timedelta(seconds=i), data=text)
            for i, text in enumerate(lines)
        ]
        frame = StreamFrame(
            node=opened.node,
            at=NOW,
            session=opened.session,
            seq=1,
            chunks=chunks,
            end=StreamEnd(reason=end, node=opened.node) if end else None,
        )
        self.frames.append(Received(opened, frame))


def follower(
    sessions: FakeSessions, tasks: list[TaskRecord], options: Options, single: bool = False
) -> tuple[LogsFollower, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(not single, options.timestamps, out, err)
    found = LogsFollower(sessions, lambda: list(tasks), options, printer, single)  # type: ignore[arg-type]
    return found, out, err


def test_a_service_s_lines_are_prefixed_and_a_restarted_task_is_followed_onto_its_attempt() -> None:
    sessions = FakeSessions()
    tasks = [record("web-1", 1), record("web-2", 1)]
    logs, out, _ = follower(sessions, tasks, Options(follow=True, tail=0))
    # given both tasks followed
    logs.sync()
    assert [(t, a, p.tail) for t, a, p in sessions.opened] == [("web-1", 1, 0), ("web-2", 1, 0)]
    first = Opened("1".zfill(32), "n1", "web-1", 1)
    sessions.give(first, "hello\n", end=EndReason.EXITED)
    for received in sessions.read(0):
        logs.show(received)
    # when web-1 restarts: its new attempt is followed from its start (no tail)
    tasks[0] = record("web-1", 2)
    logs.sync()
    assert sessions.opened[-1][:2] == ("web-1", 2) and sessions.opened[-1][2].tail is None
    assert out.getvalue() == "web-1 | hello\n"


def test_a_down_node_is_said_in_one_line_and_the_rest_goes_on() -> None:
    sessions = FakeSessions()
    sessions.refuse["web-2"] = SessionRefused("node n2 is down", EndReason.NODE_DOWN, "n2")
    tasks = [record("web-1", 1), record("web-2", 1)]
    logs, _, err = follower(sessions, tasks, Options(follow=True))
    logs.sync()
    opened = Opened("1".zfill(32), "n1", "web-1", 1)
    sessions.give(opened, end=EndReason.NO_ANSWER)
    for received in sessions.read(0):
        logs.show(received)
    assert err.getvalue().splitlines() == [
        "kube: partial: n2 is down (web-2)",
        "kube: partial: n1 did not answer (web-1)",
    ]
    assert [t for t, _, _ in sessions.opened] == ["web-1"]


def test_a_session_the_manager_lost_is_opened_again_after_the_last_line_shown() -> None:
    sessions = FakeSessions()
    logs, out, _ = follower(sessions, [record("web-1", 1)], Options(follow=True), single=True)
    logs.sync()
    opened = Opened("1".zfill(32), "n1", "web-1", 1)
    sessions.give(opened, "a\n", "b\n")
    sessions.give(opened, end=EndReason.LOST)
    for received in sessions.read(0):
        logs.show(received)
    logs.sync()
    again = sessions.opened[-1][2]
    assert again.since == NOW + timedelta(seconds=1, microseconds=1) and again.tail is None
    assert out.getvalue() == "a\nb\n"


def test_a_single_task_that_ended_ends_the_follow_and_timestamps_are_shown() -> None:
    sessions = FakeSessions()
    tasks = [record("web-1", 1, TaskState.COMPLETED)]
    logs, out, _ = follower(sessions, tasks, Options(follow=True, timestamps=True), single=True)
    logs.sync()
    opened = Opened("1".zfill(32), "n1", "web-1", 1)
    sessions.give(opened, "last\n", end=EndReason.EXITED)
    logs.run()  # returns: the task ended and its last session too
    assert out.getvalue() == "2026-11-28T05:00:00.000000Z last\n"


def test_partial_lines_name_the_node_and_say_nothing_for_a_complete_end() -> None:
    assert partial(EndReason.EXITED, "n1", "t", None) is None
    assert partial(EndReason.CLOSED, "n1", "t", None) is None
    failed = partial(EndReason.FAILED, "n1", "t", "boom")
    assert failed == "partial: n1 could not read the output of t: boom"


def test_since_takes_a_duration_ago_or_a_time() -> None:
    assert since_time("5m", now=lambda: NOW) == NOW - timedelta(minutes=5)
    assert since_time("1.5h", now=lambda: NOW) == NOW - timedelta(hours=1.5)
    assert since_time("2026-11-28T04:00:00") == datetime(2026, 11, 28, 4, tzinfo=UTC)
    assert since_time("2026-11-28T04:00:00+01:00").utcoffset() == timedelta(hours=1)
    with pytest.raises(argparse.ArgumentTypeError, match="neither a duration"):
        since_time("yesterday")


def read_once(
    sessions: FakeSessions, task: TaskRecord
) -> tuple[LogsFollower, io.StringIO, io.StringIO, list[tuple[str, str]]]:
    """`kube logs TASK`: one task read once, kept output shown instead when need be."""
    logs, out, err = follower(sessions, [task], Options(), single=True)
    shown: list[tuple[str, str]] = []
    logs.instead = lambda task_id, why: shown.append((task_id, why))
    return logs, out, err, shown


def test_a_live_output_that_cannot_be_had_is_replaced_by_the_kept_one_saying_why() -> None:
    # given a task read once whose node holds no container any more
    sessions = FakeSessions()
    logs, out, err, shown = read_once(sessions, record("web-1", 2, TaskState.FAILED))
    logs.sync()
    sessions.give(Opened("1".zfill(32), "n1", "web-1", 2), end=EndReason.NOT_FOUND)
    logs.run()
    # then the kept output is shown instead, saying why, and no partial line
    assert shown == [("web-1", "worker n1 holds no container of web-1")]
    assert (out.getvalue(), err.getvalue()) == ("", "")


def test_a_refused_session_gives_the_kept_output_with_the_manager_s_reason() -> None:
    sessions = FakeSessions()
    refused = SessionRefused("node n1 of task web-1 is down", EndReason.NODE_DOWN, "n1")
    sessions.refuse["web-1"] = refused
    logs, _, err, shown = read_once(sessions, record("web-1", 1, TaskState.LOST))
    logs.run()
    assert shown == [("web-1", "node n1 of task web-1 is down")]
    assert err.getvalue() == ""


def test_an_output_cut_short_is_said_in_a_partial_line_not_replaced() -> None:
    # given a task read once whose node died while its output was being read
    sessions = FakeSessions()
    logs, out, err, shown = read_once(sessions, record("web-1", 1))
    logs.sync()
    opened = Opened("1".zfill(32), "n1", "web-1", 1)
    sessions.give(opened, "a\n")
    sessions.give(opened, end=EndReason.NODE_DOWN)
    logs.run()
    # then what came is kept, and the rest said missing: no kept output mixed in
    assert shown == []
    assert out.getvalue() == "a\n"
    assert err.getvalue() == "kube: partial: n1 is down (web-1)\n"


def test_a_follow_that_starts_between_attempts_says_why_at_once_and_waits_for_the_next() -> None:
    # given a task lost with its node, pending its next attempt
    sessions = FakeSessions()
    refused = SessionRefused("node n1 of task web-1 is down", EndReason.NODE_DOWN, "n1")
    sessions.refuse["web-1"] = refused
    tasks = [record("web-1", 1, TaskState.PENDING)]
    logs, _, err = follower(sessions, tasks, Options(follow=True, tail=1), single=True)
    # when it is followed, then its node being down is said at the first look
    logs.sync()
    assert err.getvalue() == "kube: partial: n1 is down (web-1)\n"
    # and its next attempt is opened once it runs, from its start
    del sessions.refuse["web-1"]
    logs.sync()
    assert sessions.opened == []
    tasks[0] = record("web-1", 2)
    logs.sync()
    assert [(t, a, p.tail) for t, a, p in sessions.opened] == [("web-1", 2, None)]
