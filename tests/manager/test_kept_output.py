"""The manager's decisions about kept output: what it accepts from workers, what
`kube logs` shows of it, and the attempts `kube inspect` lists (manager/kept_output.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import core, kept_output
from manager.log_relay import LogRelay
from manager.queries import Queries
from manager.scheduler import RoundRobin
from manager.store import Store
from shared.bus import Delivery
from shared.bus.stub import StubBus
from shared.codec import encode
from shared.kept import KeptLogs
from shared.messages import KeptOutput, LogsQuery, LogsReply, TaskUpdate
from shared.models import NodeRecord, NodeStatus, Reply, TaskEvent, TaskRecord, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
NODE = NodeRecord(
    name="n1", status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
)


def sent(attempt: int, node: str = "n1", task_id: str = "t1") -> KeptOutput:
    return KeptOutput(
        node=node, at=NOW, task_id=task_id, attempt=attempt, exit_code=3, stdout="bye\n"
    )


def placed(restart: dict[str, object] | None = None) -> tuple[TaskRecord, list[TaskEvent]]:
    """A task placed on n1 (attempt 1), and its history."""
    spec = TaskSpec(name="a", image="b", restart=restart or {"policy": "never"})
    accepted = core.accept(spec, "t1", NOW)
    scheduled = core.schedule(accepted.tasks, [NODE], RoundRobin(), NOW)
    return scheduled.tasks[-1], [e for _, e in accepted.events + scheduled.events]


def update(
    task: TaskRecord, state: TaskState, at: datetime, exit_code: int | None = None
) -> TaskUpdate:
    return TaskUpdate(
        node="n1",
        task_id=task.id,
        attempt=task.attempt,
        state=state,
        at=at,
        container_id="c" + str(task.attempt),
        exit_code=exit_code,
        error=None if not exit_code else f"exited with code {exit_code}",
    )


def step(
    task: TaskRecord, events: list[TaskEvent], decision: core.Decision
) -> tuple[TaskRecord, list[TaskEvent]]:
    assert decision.refused is None, decision.refused
    return decision.tasks[-1], events + [e for _, e in decision.events]


def test_output_of_the_current_or_an_older_attempt_is_kept() -> None:
    task, _ = placed()
    kept = kept_output.accept(task, sent(1))
    assert isinstance(kept, KeptLogs)
    assert (kept.task_id, kept.attempt, kept.exit_code, kept.stdout) == ("t1", 1, 3, "bye\n")


def test_output_of_a_removed_task_is_dropped_quietly() -> None:
    # its container's removal (kube rm, retention) is what read it
    assert kept_output.accept(None, sent(1)) is None


def test_output_no_worker_could_have_sent_is_refused_with_the_reason() -> None:
    task, _ = placed()
    assert kept_output.accept(task, sent(2)) == (
        "output of attempt 2 of task t1, which has had only 1 attempts"
    )
    refused = kept_output.accept(task, sent(1, node="n2"))
    assert refused == "output of attempt 1 of task t1 from n2, which does not run it (n1 does)"


def test_a_restarted_task_lists_its_attempts_with_exit_codes_and_reasons() -> None:
    # given a task restarted once after exiting 3, whose second attempt runs
    restart = {"policy": "on-failure", "max_restarts": 2, "backoff_seconds": 0}
    task, events = placed(restart)
    task, events = step(
        task, events, core.apply_update(task, update(task, TaskState.RUNNING, NOW), NOW)
    )
    ended = NOW + timedelta(seconds=5)
    failed = update(task, TaskState.FAILED, ended, exit_code=3)
    task, events = step(task, events, core.apply_update(task, failed, ended))
    later = ended + timedelta(seconds=1)
    task, events = step(task, events, core.schedule([task], [NODE], RoundRobin(), later))
    task, events = step(
        task, events, core.apply_update(task, update(task, TaskState.RUNNING, later), later)
    )
    # when its attempts are listed, attempt 1's output being kept
    rows = kept_output.attempts(task, events, {1: 3})
    # then each attempt says where and when it ran, and how it ended
    assert [(r.attempt, r.node, r.state, r.exit_code, r.kept) for r in rows] == [
        (1, "n1", TaskState.FAILED, 3, True),
        (2, "n1", TaskState.RUNNING, None, False),
    ]
    assert (rows[0].started, rows[0].ended, rows[0].reason) == (NOW, ended, "exited with code 3")
    assert (rows[1].started, rows[1].ended) == (later, None)


def test_the_last_attempt_of_an_ended_task_has_the_tasks_exit_code() -> None:
    task, events = placed()
    task, events = step(
        task, events, core.apply_update(task, update(task, TaskState.RUNNING, NOW), NOW)
    )
    failed = update(task, TaskState.FAILED, NOW, exit_code=7)
    task, events = step(task, events, core.apply_update(task, failed, NOW))
    (row,) = kept_output.attempts(task, events, {})
    assert (row.state, row.exit_code, row.kept) == (TaskState.FAILED, 7, False)


def kept_logs(stdout: str, stderr: str = "") -> KeptLogs:
    return KeptLogs(
        task_id="t1", attempt=1, node="n1", exit_code=3, at=NOW, stdout=stdout, stderr=stderr
    )


def test_kept_output_is_shown_cut_to_the_tail_asked_for() -> None:
    shown = kept_logs("a\nb\nc\n", "x\ny\nz")
    reply = kept_output.shown(shown, 2, "node n1 of task t1 is down")
    assert reply.ok and (reply.result["stdout"], reply.result["stderr"]) == ("b\nc\n", "y\nz")
    assert reply.result["why"] == "node n1 of task t1 is down"
    assert kept_output.shown(kept_logs("a\nb\n"), 0).result["stdout"] == ""
    assert kept_output.shown(kept_logs("a\nb\n"), None).result["why"] is None


def ask(relay: LogRelay, fallback: KeptLogs | None) -> str:
    request = relay.request(
        reply_to="r",
        correlation_id="c",
        node="n1",
        task_id="t1",
        attempt=2,
        tail=1,
        now=100.0,
        fallback=fallback,
    )
    return request.request_id


def test_a_worker_that_has_no_output_or_does_not_answer_gets_the_kept_output_shown() -> None:
    relay = LogRelay()
    # when the worker says the container is gone
    request_id = ask(relay, kept_logs("a\nb\n"))
    reply = LogsReply(node="n1", at=NOW, request_id=request_id, task_id="t1", error="no container")
    answer = relay.answer(reply)
    # then the asker gets the kept output (its tail), saying why
    assert answer is not None and answer.reply.ok
    assert answer.reply.result["stdout"] == "b\n" and answer.reply.result["why"] == "no container"
    # and when the worker does not answer in time, likewise, naming the node
    ask(relay, kept_logs("a\n"))
    (late,) = relay.expire(100.0 + relay.timeout)
    assert late.reply.ok and "worker n1 did not answer" in late.reply.result["why"]
    # without kept output, the error as before
    ask(relay, None)
    (late,) = relay.expire(100.0 + relay.timeout)
    assert not late.reply.ok and "worker n1 did not answer" in (late.reply.error or "")


def logs_query(queries: Queries, **query: object) -> Reply | None:
    body = encode(LogsQuery.model_validate({"id": "t1", **query}))
    delivery = Delivery(body, "kube.commands", "query.logs", {}, "amq.gen-1", "c", None,
                        None, False, "q", 1, 0)  # fmt: skip
    return queries.logs(delivery)


def test_logs_of_a_task_between_attempts_or_on_a_down_node_show_what_was_kept(
    store_url: str,
) -> None:
    # given a task whose first attempt failed and was kept, restarted and pending
    store = Store(store_url)
    restart = {"policy": "on-failure", "max_restarts": 2, "backoff_seconds": 60}
    task, _ = placed(restart)
    store.record(core.Decision(nodes=[NODE]))
    store.record(core.accept(task.spec, "t1", NOW))
    running = core.apply_update(task, update(task, TaskState.RUNNING, NOW), NOW)
    store.record(running)
    failed = update(running.tasks[-1], TaskState.FAILED, NOW, exit_code=3)
    store.record(core.apply_update(running.tasks[-1], failed, NOW))
    store.keep_output(kept_logs("a\nb\n", "oops\n"))
    store.commit()
    queries = Queries(store, StubBus(), LogRelay(), lambda: 0.0, lambda: NOW)
    # when its logs are asked for, then the kept output is shown, saying why
    reply = logs_query(queries)
    assert reply is not None and reply.ok, reply
    assert (reply.result["attempt"], reply.result["stdout"]) == (1, "a\nb\n")
    assert reply.result["why"] == "task t1 is pending"
    # and asked for by attempt, or as the previous one, likewise without a why
    for asked in ({"attempt": 1, "tail": 1}, {"previous": True, "tail": 1}):
        reply = logs_query(queries, **asked)
        assert reply is not None and reply.ok and reply.result["why"] is None
        assert reply.result["stdout"] == "b\n"
    # and an attempt with nothing kept is an error saying so
    reply = logs_query(queries, attempt=2)
    assert reply is not None and not reply.ok and "no output of attempt 2" in (reply.error or "")
    # when it runs again on a node that is then down, the kept output is shown for it
    pending = store.task("t1")
    assert pending is not None
    later = NOW + timedelta(seconds=61)  # past its backoff
    placed_again = core.schedule([pending], [NODE], RoundRobin(), later)
    assert placed_again.tasks and placed_again.tasks[-1].state == TaskState.SCHEDULED
    store.record(placed_again)
    store.record(core.Decision(nodes=[NODE.model_copy(update={"status": NodeStatus.DOWN})]))
    store.commit()
    reply = logs_query(queries)
    assert reply is not None and reply.ok and reply.result["why"] == "node n1 of task t1 is down"
    store.close()
