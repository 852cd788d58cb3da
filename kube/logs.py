"""`kube logs [-f] TASK|SERVICE`: output through streaming sessions (kube/sessions.py).

A task's output, or every task's of a service (each line prefixed with its task), as
`docker logs` and `docker service logs` show it: the container's stdout on stdout, its
stderr on stderr. Following (-f), it goes on as lines are written: onto the new attempt
of a task that restarts, and onto the tasks of a service that start later. A node that is
down or does not answer is said in one line (`kube: partial: node-2 did not answer
(web-1a2b3c4d)`) and the rest goes on: never a bare error exit. A session the manager
lost (it restarted) is opened again from the time of the last line shown.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO

from kube import kept_logs
from kube.arguments import DURATION, since_time
from kube.client import Client
from kube.sessions import Opened, Received, SessionRefused, Sessions
from shared.models import TaskRecord
from shared.sessions import Chunk, EndReason, Fd, LogsParams, StreamEnd
from shared.states import TERMINAL, TaskState

log = logging.getLogger(__name__)

POLL = 1.0
"""Seconds between looks at the task (or the service's tasks) while following: new
attempts and new tasks are picked up within this long."""

READ = 0.2
"""Seconds a read waits for frames before the loop looks at the clock again."""

READABLE = TERMINAL | {TaskState.RUNNING}
"""States in which a task's attempt has its container, for a follower to open: a task
scheduled has none yet, and a restarted one is pending until its new attempt runs."""

AGAIN = (EndReason.LOST, EndReason.EXPIRED)
"""Ends after which the same attempt is opened again, from the last line's time."""

MAX_TAIL = 1_000_000
"""The most lines --tail takes: the bound of the wire's `tail` (LogsParams, LogsQuery)."""


def tail_problem(lines: int) -> str | None:
    """Why --tail cannot take this many lines (None: it can)."""
    return f"{lines} is more than {MAX_TAIL}" if lines > MAX_TAIL else None


def since_flag(text: str) -> datetime:
    """--since: a time in the past (kube.arguments.since_time), but not a zero duration,
    which would mean "now" here and "everything" to `docker logs --since 0`."""
    found = DURATION.match(text.strip())
    if found is not None and float(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no time ago: -f --tail 0 follows from now on; leave --since out"
            " for all of it"
        )
    return since_time(text)


@dataclass(frozen=True)
class Options:
    """What to show, as the flags say."""

    follow: bool = False
    since: datetime | None = None
    tail: int | None = None
    timestamps: bool = False
    stdout: bool = True
    stderr: bool = True


@dataclass
class Followed:
    """One attempt of a task: whether it is streamed now, and the time of its last line."""

    opened: Opened | None = None
    last: datetime | None = None
    done: bool = False
    shown: bool = False  # some of its output is shown


def unreadable(reason: EndReason, node: str, task_id: str, error: str | None) -> str | None:
    """Why a node gives none (or not all) of an attempt's output, for an end that leaves
    some out; None for an end that leaves nothing out."""
    if reason == EndReason.NODE_DOWN:
        return f"{node} is down"
    if reason == EndReason.NO_ANSWER:
        return f"{node} did not answer"
    if reason == EndReason.FAILED:
        return f"{node} could not read the output of {task_id}: {error or 'failed'}"
    if reason == EndReason.NOT_FOUND:
        return f"{node} holds no container of {task_id}"
    return None


def partial(reason: EndReason, node: str | None, task_id: str, error: str | None) -> str | None:
    """The line that says output is missing, for an end that leaves some out; None for
    an end that leaves nothing out."""
    said = unreadable(reason, node or "its node", task_id, error)
    if said is None:
        return None
    if reason in (EndReason.NODE_DOWN, EndReason.NO_ANSWER):
        said += f" ({task_id})"
    return f"partial: {said}"


class Printer:
    """Writes chunks where they belong: stdout's to `out`, stderr's to `err`."""

    def __init__(self, prefixed: bool, timestamps: bool, out: IO[str], err: IO[str]) -> None:
        self.prefixed = prefixed
        self.timestamps = timestamps
        self.out = out
        self.err = err

    def chunk(self, task_id: str, chunk: Chunk) -> None:
        """The chunk's bytes exactly as the engine logged them (on a stream with a byte
        buffer, as stdout and stderr have); before them its prefix and time if asked."""
        stream = self.err if chunk.fd == Fd.STDERR else self.out
        head = f"{task_id} | " if self.prefixed else ""
        if self.timestamps and chunk.at is not None:
            head += chunk.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ ")
        data = chunk.raw()
        binary: IO[bytes] | None = getattr(stream, "buffer", None)
        if binary is None:  # a stream of text only: bytes that are not UTF-8 replaced
            stream.write(head + data.decode("utf-8", errors="replace"))
            return
        # its text layer holds nothing: every text written (note) is flushed at once
        binary.write(head.encode() + data)

    def note(self, text: str) -> None:
        self.out.flush()
        self.err.write(f"kube: {text}\n")
        self.err.flush()

    def flush(self) -> None:
        self.out.flush()
        self.err.flush()


@dataclass
class LogsFollower:
    """Keeps one session open per attempt worth reading, until there is nothing to wait for."""

    sessions: Sessions
    tasks: Callable[[], list[TaskRecord]]  # the task, or the service's tasks, as they are now
    options: Options
    printer: Printer
    single: bool  # one task (ends with it), not a service (followed until interrupted)
    # shows what the manager kept instead of a live output that cannot be had, and why
    # (`kube logs TASK` read once: kube/kept_logs.py); None: say it in a partial line
    instead: Callable[[str, str], None] | None = None
    attempts: dict[tuple[str, int], Followed] = field(default_factory=dict)
    ended: bool = False  # a single task ended: nothing more will come
    looked: bool = False  # the first look is done: later attempts are shown whole

    def run(self) -> None:
        self.sync()
        next_look = time.monotonic() + POLL
        while not self.finished():
            for received in self.sessions.read(READ):
                self.show(received)
            self.printer.flush()
            if self.options.follow and time.monotonic() >= next_look:
                self.sync()
                next_look = time.monotonic() + POLL

    def finished(self) -> bool:
        if any(f.opened is not None for f in self.attempts.values()):
            return False
        return not self.options.follow or (self.single and self.ended)

    def sync(self) -> None:
        """Open a session on each attempt worth reading that has none yet."""
        tasks = self.tasks()
        if self.single:
            self.ended = all(t.state in TERMINAL for t in tasks)
        for task in tasks:
            if task.attempt == 0 or task.node is None:
                continue  # not placed yet
            if self.options.follow and task.state not in READABLE and self.looked:
                continue  # its container is not there yet (or lost): the next look sees
            # (at the first look, a task between attempts is opened on its last: its
            # tail is shown, or why it cannot be, such as its node being down)
            if not self.options.follow and any(key[0] == task.id for key in self.attempts):
                continue  # read once
            key = (task.id, task.attempt)
            followed = self.attempts.setdefault(key, Followed())
            if followed.opened is None and not followed.done:
                self.open(task, followed)
        self.looked = True

    def open(self, task: TaskRecord, followed: Followed) -> None:
        """Open a session on the task's current attempt: from --since and --tail at the
        first look; from its start for an attempt that started later; after the last
        line shown for one opened again."""
        since, tail = self.options.since, self.options.tail if not self.looked else None
        if followed.last is not None:
            since, tail = followed.last + timedelta(microseconds=1), None
        params = LogsParams(
            follow=self.options.follow,
            since=since,
            tail=tail,
            stdout=self.options.stdout,
            stderr=self.options.stderr,
        )
        try:
            followed.opened = self.sessions.open(task.id, logs=params, attempt=task.attempt)
        except SessionRefused as exc:
            if self.instead is not None:
                followed.done = True
                self.instead(task.id, str(exc))  # the manager's reason
                return
            if exc.reason is None and (self.single and not self.options.follow):
                raise  # asked once for one task: the manager's reason is the answer
            if exc.reason is None:
                log.info("task %s: no session yet: %s", task.id, exc)
                if task.state in TERMINAL or not self.options.follow:
                    followed.done = True
                return  # tried again at the next look
            followed.done = True
            note = partial(exc.reason, exc.node, task.id, None)
            if note is not None:
                self.printer.note(note)

    def show(self, received: Received) -> None:
        opened = received.opened
        followed = self.attempts.get((opened.task_id, opened.attempt))
        if followed is None:
            return
        for chunk in received.frame.chunks:
            self.printer.chunk(opened.task_id, chunk)
            followed.last = chunk.at or followed.last
            followed.shown = True
        if received.frame.end is not None:
            self.ended_session(opened, followed, received.frame.end)

    def ended_session(self, opened: Opened, followed: Followed, end: StreamEnd) -> None:
        followed.opened = None
        if end.reason in AGAIN:
            log.info("session of %s %s; opening it again", opened.task_id, end.reason.value)
            return  # the next look opens it again, from the last line's time
        followed.done = True
        node = end.node or opened.node
        said = unreadable(end.reason, node, opened.task_id, end.error)
        if said is not None and self.instead is not None and not followed.shown:
            self.instead(opened.task_id, f"worker {said}")
            return
        note = partial(end.reason, node, opened.task_id, end.error)
        if note is not None:
            self.printer.note(note)


def show_logs(
    client: Client,
    target: str,
    is_service: bool,
    options: Options,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    kept: bool = False,
) -> None:
    """Print a task's (or a service's) output, following it if asked, until it ends, or
    until interrupted; every session is closed on the way out, Ctrl-C included. With
    `kept`, a task's live output that cannot be had is replaced by what the manager kept
    of its last ended attempt (`kube logs TASK`)."""

    def tasks() -> list[TaskRecord]:
        if is_service:
            return [t for t in client.list() if t.service == target]
        return [client.inspect(target)[0]]

    printer = Printer(is_service, options.timestamps, out or sys.stdout, err or sys.stderr)

    def instead(task_id: str, why: str) -> None:
        printer.flush()
        shown = kept_logs.instead(client, task_id, why, options.tail)
        kept_logs.write(shown, printer.out, printer.err, options.stdout, options.stderr)

    with client.sessions() as sessions:
        follower = LogsFollower(sessions, tasks, options, printer, single=not is_service)
        if kept and not is_service:
            follower.instead = instead
        try:
            follower.run()
        finally:
            printer.flush()
