"""The partition scenario of issue 13, for any way of cutting a worker off: 16 tasks on a
worker that is cut off from the broker for 30 s and then healed, measured and asserted.

The tasks: 4 `careful` ones that ask to be stopped after 5 s cut off; 4 `polite` ones
that keep running and exit at once on SIGTERM (so a stop's grace does not hide when it
was sent); 8 `stubborn` ones that keep running, ignore SIGTERM (a 10 s grace each) and may
not restart (so a node loss that counted as a restart would fail them). The engines'
live containers are sampled every 100 ms throughout (tests/support/copies.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kube.client import Client
from shared.models import NodeStatus, TaskEvent, TaskRecord, TaskSpec
from shared.states import TaskState
from tests.support.copies import Copies
from tests.support.waiting import wait_for

STOP_AFTER = 5.0
CUT_SECONDS = 30.0
POLITE = ("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done")
STUBBORN = ("sleep", "3600")


def spec(image: str, name: str, command: tuple[str, ...], **fields: object) -> TaskSpec:
    return TaskSpec.model_validate(
        {"name": name, "image": image, "command": command, "pull_policy": "never", **fields}
    )


def ready(client: Client, node: str) -> bool:
    return any(n.name == node and n.status == NodeStatus.READY for n in client.nodes())


def running_on(client: Client, node: str, task_ids: list[str]) -> float | None:
    """The time at which all these tasks run on `node`, if they do now."""
    tasks = [client.get(i) for i in task_ids]
    done = all(t.node == node and t.state == TaskState.RUNNING for t in tasks)
    return time.monotonic() if done else None


@dataclass
class Outcome:
    """What a partition did, times in `time.monotonic()` seconds."""

    cut_node: str
    other_node: str
    careful: list[str]
    polite: list[str]
    stubborn: list[str]
    copies: Copies
    cut_at: float = 0.0
    down_at: float = 0.0
    moved_at: float = 0.0
    healed_at: float = 0.0
    doubled_in_cut: list[str] = field(default_factory=list)
    tasks: dict[str, tuple[TaskRecord, list[TaskEvent]]] = field(default_factory=dict)

    @property
    def everything(self) -> list[str]:
        return self.careful + self.polite + self.stubborn

    def gone(self, task_id: str, since: float) -> float:
        """Seconds after `since` when the task's first attempt was last seen running."""
        return (self.copies.last_seen(task_id, 1) or 0) - since

    def summary(self) -> str:
        cut, healed = self.cut_at, self.healed_at
        replaced = [round((self.copies.first_seen(i, 2) or 0) - cut, 1) for i in self.careful]
        return (
            f"cut: node down after {self.down_at - cut:.1f}s, tasks elsewhere after"
            f" {self.moved_at - cut:.1f}s; careful copies gone after"
            f" {[round(self.gone(i, cut), 1) for i in self.careful]}s, replaced after"
            f" {replaced}s; heal: polite fenced after"
            f" {[round(self.gone(i, healed), 1) for i in self.polite]}s, stubborn after"
            f" {[round(self.gone(i, healed), 1) for i in self.stubborn]}s"
        )


def cut_for_30s(
    client: Client,
    image: str,
    cut_node: str,
    start_other: Callable[[], str],
    cut: Callable[[], None],
    heal: Callable[[], None],
    copies: Copies,
) -> Outcome:
    """Run 16 tasks on `cut_node`, start the other worker (`start_other` returns its node
    name once started), cut the first off for 30 s, heal it, and wait until each task runs
    once. Returns what was measured; `check` asserts it."""
    stop_after = {"stop_after_seconds": STOP_AFTER}
    no_restarts = {"max_restarts": 0}
    careful = [
        client.submit(spec(image, f"careful-{i}", POLITE, on_disconnect=stop_after))
        for i in range(4)
    ]
    polite = [client.submit(spec(image, f"polite-{i}", POLITE)) for i in range(4)]
    stubborn = [
        client.submit(spec(image, f"stubborn-{i}", STUBBORN, restart=no_restarts)) for i in range(8)
    ]
    for task_id in careful + polite + stubborn:
        assert client.wait(task_id, {TaskState.RUNNING}, timeout=60).node == cut_node
    other = start_other()
    out = Outcome(cut_node, other, careful, polite, stubborn, copies)
    copies.watch(out.everything)
    wait_for(lambda: ready(client, other), what="the other worker ready", timeout=60)
    copies.start()
    try:
        out.cut_at = time.monotonic()
        cut()
        out.down_at = wait_for(
            lambda: not ready(client, cut_node) and time.monotonic(),
            what="the cut node down",
            timeout=30,
        )
        out.moved_at = wait_for(
            lambda: running_on(client, other, polite + stubborn),
            what="the tasks that keep running, running elsewhere too",
            timeout=30,
        )
        wait_for(
            lambda: running_on(client, other, careful),
            what="the careful tasks running elsewhere",
            timeout=40,
        )
        wait_for(
            lambda: time.monotonic() - out.cut_at >= CUT_SECONDS,
            what=f"{CUT_SECONDS:g} s of cut",
            timeout=CUT_SECONDS + 10,
        )
        out.doubled_in_cut = [i for i in polite + stubborn if copies.live_now()[i] == 2]
        out.healed_at = time.monotonic()
        heal()
        wait_for(
            lambda: all(copies.live_now()[i] == 1 for i in out.everything),
            what="one live copy of each task",
            timeout=60,
        )
        wait_for(lambda: ready(client, cut_node), what="the cut node back", timeout=60)
        # the cut worker's reports of what it stopped while cut off
        wait_for(
            lambda: all(any(e.superseded for e in client.inspect(i)[1]) for i in careful),
            what="the careful tasks' history of the cut",
            timeout=30,
        )
    finally:
        copies.stop()
    out.tasks = {i: client.inspect(i) for i in out.everything}
    return out


def check(out: Outcome) -> None:
    """The numbers of issue 13, asserted."""
    print(out.summary())  # shown when the test fails, and with -s
    assert not out.copies.errors
    # the node was down, and the tasks ran elsewhere, within 10 s of the cut
    assert out.down_at - out.cut_at < 10
    assert out.moved_at - out.cut_at < 10
    # the careful tasks' copies on the cut node stopped within their 5 s (plus the kill
    # grace), and never ran alongside their replacements
    for task_id in out.careful:
        gone = out.copies.last_seen(task_id, 1)
        replaced = out.copies.first_seen(task_id, 2)
        assert gone is not None and replaced is not None
        assert gone - out.cut_at < STOP_AFTER + 2.5, f"{task_id}: {out.summary()}"
        assert replaced > gone
    assert out.copies.doubled(out.careful) == []
    # the others ran twice during the cut, and their stale copies went within 10 s of the
    # heal, together: the stubborn ones' grace periods did not add up
    assert out.doubled_in_cut == out.polite + out.stubborn
    assert max(out.gone(i, out.healed_at) for i in out.polite) < 10
    stubborn = [out.gone(i, out.healed_at) for i in out.stubborn]
    # their 10 s grace, after the heal was found (the polite ones' time, under 10 s)
    assert max(stubborn) < 10 + max(out.gone(i, out.healed_at) for i in out.polite) + 2
    assert max(stubborn) - min(stubborn) < 3
    # each task runs once, on the other node, its restart budget untouched
    for task, _ in out.tasks.values():
        assert (task.node, task.attempt, task.state) == (out.other_node, 2, TaskState.RUNNING)
        assert (task.restart_count, task.lost_count) == (0, 1)
    assert sum(out.copies.live_now().values()) == len(out.everything)
    # and no copy it stopped is left behind, exited, on any engine once the heal settled
    left: list[tuple[str, int, str]] = []

    def none_left() -> bool:
        left[:] = out.copies.left_behind(out.everything)
        return not left

    try:
        wait_for(none_left, what="no stopped copy left on any engine", timeout=30)
    except AssertionError:
        raise AssertionError(f"stopped copies left behind after the heal: {left}") from None
    # and the careful tasks' history says what their worker did while cut off
    for task_id in out.careful:
        _, events = out.tasks[task_id]
        [stopped] = [e for e in events if e.superseded]
        assert (stopped.node, stopped.attempt) == (out.cut_node, 1)
        assert stopped.detail is not None
        assert stopped.detail.startswith(f"stopped by {out.cut_node} after 5."), stopped.detail
    # and the others' history says their stale copy was stopped when the node came back
    for task_id in out.polite + out.stubborn:
        _, events = out.tasks[task_id]
        [fenced] = [e for e in events if e.superseded]
        assert (fenced.node, fenced.attempt, fenced.state) == (out.cut_node, 1, TaskState.LOST)
        assert fenced.detail == (
            f"stale copy of attempt 1 listed by {out.cut_node} when it came back: stopped"
        ), fenced.detail
