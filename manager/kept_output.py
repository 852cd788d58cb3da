"""The end of ended attempts' output, kept by the manager: what it accepts from workers,
what `kube logs` shows from it, and the attempts `kube inspect` lists.

Pure: the server reads and writes the store (manager/store/kept.py), these decide.
A worker reads the last KEPT_OUTPUT_BYTES of an attempt's output when the attempt ends,
before its container is removed (worker/attempt_output.py), and sends it on kube.results
as a `KeptOutput`. `kube logs` shows it when the live output cannot be had: the task is
between attempts, its node is down or does not answer, or the container is gone; or when
asked for it (`--previous`, `--attempt K`), as `kubectl logs --previous` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.kept import AttemptSummary, KeptLogs
from shared.messages import KeptOutput
from shared.models import Reply, TaskEvent, TaskRecord
from shared.states import TaskState

ENDED = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.LOST})


def accept(task: TaskRecord | None, sent: KeptOutput) -> KeptLogs | str | None:
    """What to keep of a worker's `KeptOutput`: the record, or why it is refused (a
    message no worker of this cluster could have sent), or None to drop it quietly (its
    task was removed meanwhile: the removal of its container is what sent it)."""
    if task is None:
        return None
    if sent.attempt > task.attempt:
        return (
            f"output of attempt {sent.attempt} of task {task.id}, which has had only"
            f" {task.attempt} attempts"
        )
    draining = task.draining
    if (
        sent.attempt == task.attempt
        and task.node is not None
        and sent.node != task.node
        and not (draining is not None and draining.node == sent.node)
    ):
        return (
            f"output of attempt {sent.attempt} of task {task.id} from {sent.node}, which"
            f" does not run it ({task.node} does)"
        )
    return KeptLogs.model_validate(sent.model_dump(exclude={"kind"}))


def live(task: TaskRecord) -> bool:
    """Whether the task's current attempt may have a container to read: placed on a node,
    and not between attempts (pending a restart, or lost)."""
    return (
        task.node is not None
        and task.attempt > 0
        and task.state
        not in (
            TaskState.PENDING,
            TaskState.LOST,
        )
    )


def shown(kept: KeptLogs, tail: int | None, why: str | None = None) -> Reply:
    """The reply of `query.logs` that shows kept output (the last `tail` lines of
    each stream)."""
    update = {"stdout": _tail(kept.stdout, tail), "stderr": _tail(kept.stderr, tail), "why": why}
    result = kept.model_copy(update=update)
    return Reply(ok=True, id=kept.task_id, result=result.model_dump(mode="json"))


def instead(kept: KeptLogs | None, tail: int | None, why: str, task_id: str | None = None) -> Reply:
    """The reply of `query.logs` when the live output cannot be had, `why`: the kept
    output if there is any, else the error."""
    if kept is None:
        return Reply(ok=False, id=task_id, error=why)
    return shown(kept, tail, why)


def _tail(text: str, lines: int | None) -> str:
    """The last `lines` lines of a text (all of it for None)."""
    if lines is None:
        return text
    cut = text.splitlines(keepends=True)
    return "".join(cut[len(cut) - lines :] if lines else [])


def missing(task: TaskRecord, attempt: int | None) -> Reply:
    """`query.logs` for kept output there is none of."""
    which = "any ended attempt" if attempt is None else f"attempt {attempt}"
    return Reply(
        ok=False,
        id=task.id,
        error=f"no output of {which} of task {task.id} is kept (the manager keeps the end"
        " of a task's last 5 ended attempts, sent by their node when they end)",
    )


def attempts(
    task: TaskRecord, events: Sequence[TaskEvent], kept: dict[int, int | None]
) -> list[AttemptSummary]:
    """A task's attempts, read from its history: where each ran, when it started and
    ended, and how (the exit code from its kept output, or the task's own for its last)."""
    found: dict[int, dict[str, object]] = {}
    for event in events:
        if event.attempt < 1:
            continue
        entry = found.setdefault(event.attempt, {"attempt": event.attempt})
        if event.node is not None and (not event.superseded or "node" not in entry):
            entry.setdefault("node", event.node)
        if "ended" in entry:
            continue
        if event.state == TaskState.RUNNING:
            entry["started"] = entry.get("running", event.at)
            entry.setdefault("running", event.at)
        elif event.state == TaskState.SCHEDULED:
            entry.setdefault("started", event.at)  # until it is reported running
        if event.restart is not None:
            entry.update(
                ended=event.at,
                state=TaskState(event.restart.cause.value),
                reason=event.restart.reason or event.detail,
            )
        elif event.state in ENDED:
            entry.update(ended=event.at, state=event.state, reason=event.detail)
        else:
            entry["state"] = event.state
    rows = []
    for number, entry in sorted(found.items()):
        entry.pop("running", None)
        code = kept.get(number)
        if code is None and number == task.attempt and task.state.terminal:
            code = task.exit_code
        rows.append(
            AttemptSummary.model_validate(
                {"state": TaskState.SCHEDULED, **entry, "exit_code": code, "kept": number in kept}
            )
        )
    return rows
