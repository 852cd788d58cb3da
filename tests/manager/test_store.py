"""The store, on each engine (SQLite and PostgreSQL: the `store_url` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager import core
from manager.attempts import holds_attempt
from manager.effects import Decision, Outgoing
from manager.nodes import Where
from manager.scheduler import RoundRobin
from manager.store import Store, connect
from shared.errors import StoreError
from shared.models import DrainingAttempt, NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.states import TaskState
from tests.support.stores import Stores

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_decision_is_recorded_whole_and_survives_reopening(store_url: str) -> None:
    # given a store with a node and a task scheduled onto it
    store = Store(store_url)
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=4, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )
    store.record(Decision(nodes=[node]))
    spec = TaskSpec(name="a", image="b", cpu=1.5, memory=1024)
    decision = core.accept(spec, "t1", NOW)
    decision.extend(core.schedule(decision.tasks, store.nodes(), RoundRobin(), NOW))
    store.record(decision)
    store.close()
    # when it is opened again
    store = Store(store_url)
    # then the task, its history, the allocation and the outbox are all there
    task = store.task("t1")
    assert task is not None and task.state == TaskState.SCHEDULED
    assert [e.state for e in store.events("t1")] == [TaskState.PENDING, TaskState.SCHEDULED]
    (n1,) = store.nodes()
    assert (n1.allocated_cpu, n1.allocated_memory, n1.task_count) == (1.5, 1024, 1)
    assert [o.routing_key for _, o in store.outbox()] == ["task.pending", "task.scheduled", "n1"]


def test_allocation_is_released_when_a_task_ends(store_url: str) -> None:
    store = Store(store_url)
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=4, memory=1024, disk=1024, last_heartbeat=NOW
    )
    store.record(Decision(nodes=[node]))
    decision = core.schedule(
        core.accept(TaskSpec(name="a", image="b", cpu=1), "t1", NOW).tasks,
        [node],
        RoundRobin(),
        NOW,
    )
    store.record(decision)
    done = decision.tasks[-1].model_copy(update={"state": TaskState.COMPLETED})
    store.record(Decision(tasks=[done]))
    assert store.nodes()[0].allocated_cpu == 0 and store.nodes()[0].task_count == 0
    assert [t.id for t in store.tasks([TaskState.COMPLETED])] == ["t1"]


def test_sent_messages_leave_the_outbox(store_url: str) -> None:
    store = Store(store_url)
    store.record(Decision(outgoing=[Outgoing("x", "a", b"1"), Outgoing("x", "b", b"2")]))
    first, second = store.outbox()
    store.sent([first[0]])
    assert store.outbox() == [second]


def test_a_batch_is_one_transaction_seen_by_others_only_once_committed(store_url: str) -> None:
    # given a store that recorded two decisions, and another connection to its database
    store = Store(store_url)
    store.record(Decision(outgoing=[Outgoing("x", "a", b"1")]))
    store.record(Decision(outgoing=[Outgoing("x", "b", b"2")]))
    reader = connect(store_url)
    # then the store reads its own writes, and nobody else sees them yet
    assert [o.routing_key for _, o in store.outbox()] == ["a", "b"]
    assert reader.query("SELECT count(*) FROM outbox") == [(0,)]
    # when it commits
    store.commit()
    # then both are there for everyone
    assert reader.query("SELECT count(*) FROM outbox") == [(2,)]
    reader.close()


def test_a_decision_that_fails_is_undone_alone_and_the_batch_goes_on(store_url: str) -> None:
    # given a store that recorded one decision of a batch
    store = Store(store_url)
    store.record(Decision(outgoing=[Outgoing("x", "a", b"1")]))
    # when the next decision fails half-way (its second message breaks a constraint)
    broken = Outgoing("x", None, b"3")  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.record(Decision(outgoing=[Outgoing("x", "b", b"2"), broken]))
    store.record(Decision(outgoing=[Outgoing("x", "c", b"4")]))
    store.commit()
    # then none of the failed decision is kept, and all of the others are
    assert [o.routing_key for _, o in Store(store_url).outbox()] == ["a", "c"]


STATES = [TaskState.PENDING, TaskState.SCHEDULED, TaskState.RUNNING, TaskState.COMPLETED]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(STATES),
            st.sampled_from(["n1", "n2"]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_in_memory_holdings_and_attempts_always_equal_a_fresh_read_of_the_table(
    stores: Stores, steps: list[tuple[int, TaskState, str, bool]]
) -> None:
    # given a store with two nodes
    path = stores.new()
    store = Store(path)
    store.record(
        Decision(
            nodes=[
                NodeRecord(
                    name=n,
                    status=NodeStatus.READY,
                    cpus=64,
                    memory=1024**4,
                    disk=1024**4,
                    last_heartbeat=NOW,
                )
                for n in ("n1", "n2")
            ]
        )
    )
    tasks: dict[int, TaskRecord] = {}
    # when tasks move between states, nodes and attempts, sometimes draining from the
    # other node, several at once per decision
    for i, state, node, drains in steps:
        base = (
            tasks.get(i)
            or core.accept(
                TaskSpec(name=f"svc{i % 2}", image="b", cpu=0.5, memory=1024), f"t{i}", NOW
            ).tasks[0]
        )
        other = DrainingAttempt(node="n2" if node == "n1" else "n1", attempt=base.attempt + 1)
        tasks[i] = base.model_copy(
            update={
                "state": state,
                "node": node,
                "attempt": base.attempt + 1,
                "draining": other if drains else None,
            }
        )
        store.record(Decision(tasks=[base, tasks[i]]))
    # then what the store keeps in memory is what a fresh store reads from the table
    store.commit()
    fresh = Store(path)
    assert store.nodes() == fresh.nodes()
    assert store.peers() == fresh.peers()
    ids = [f"t{i}" for i in range(6)]
    assert store.where(ids) == fresh.where(ids)
    assert {n: store.running_on(n) for n in ("n1", "n2")} == {
        n: fresh.running_on(n) for n in ("n1", "n2")
    }
    # and it holds every task that holds an attempt, as the records say
    records = fresh.tasks_by_id(ids)
    assert store.where(ids) == {
        i: Where.of(t) for i, t in records.items() if holds_attempt(Where.of(t))
    }
    assert store.running_on("n1") == {
        i: t.attempt for i, t in records.items() if t.state == TaskState.RUNNING and t.node == "n1"
    }


def test_where_tells_the_attempts_tasks_hold_and_which_run(store_url: str) -> None:
    store = Store(store_url)
    task = core.accept(TaskSpec(name="a", image="b"), "t1", NOW).tasks[0]
    placed = task.model_copy(
        update={
            "state": TaskState.RUNNING,
            "node": "n2",
            "attempt": 3,
            "draining": DrainingAttempt(node="n1", attempt=2),
        }
    )
    store.record(Decision(tasks=[placed]))
    assert store.where(["t1", "nope"]) == {"t1": Where.of(placed)}
    assert store.running_on("n2") == {"t1": 3} and store.running_on("n1") == {}
    # and a task pending for its next attempt still holds the one draining from n1
    moving = placed.model_copy(
        update={"state": TaskState.PENDING, "draining": DrainingAttempt(node="n1", attempt=3)}
    )
    store.record(Decision(tasks=[moving]))
    assert store.where(["t1"]) == {"t1": Where.of(moving)} and store.running_on("n2") == {}
    # and a task that ended holds no attempt
    done = placed.model_copy(update={"state": TaskState.COMPLETED, "draining": None})
    store.record(Decision(tasks=[done]))
    assert store.where(["t1"]) == {} and store.running_on("n2") == {}


def test_a_commit_never_claims_writes_it_did_not_keep(store_url: str) -> None:
    # given a store that recorded a decision, then failed a read in the same transaction
    store = Store(store_url)
    store.record(Decision(outgoing=[Outgoing("x", "a", b"1")]))
    with pytest.raises(StoreError):
        store._query("SELECT * FROM nowhere")  # a read that fails (PostgreSQL: aborts all)
    # when it commits
    try:
        store.commit()
        kept = True
    except StoreError:  # PostgreSQL: the transaction was lost with the failed read
        kept = False
    # then what a fresh store reads is what the commit said, and so is what it holds
    fresh = Store(store_url)
    assert len(fresh.outbox()) == len(store.outbox()) == (1 if kept else 0)
    assert kept == (not store_url.startswith("postgresql"))


def test_a_record_is_parsed_once_while_its_row_is_unchanged(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a store with a service's two tasks, read once
    store = Store(store_url)
    for task_id in ("t1", "t2"):
        store.record(core.accept(TaskSpec(name="web", image="b"), task_id, NOW))
    first = store.tasks_named("web")
    parsed: list[str] = []
    real = TaskRecord.model_validate_json

    def counting(text: str | bytes, **kwargs: object) -> TaskRecord:
        parsed.append(str(text))
        return real(text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TaskRecord, "model_validate_json", counting)
    # when they are read again, one of them changed since
    changed = first[0].model_copy(update={"state": TaskState.FAILED, "error": "gone"})
    store.record(Decision(tasks=[changed]))
    again = store.tasks_named("web")
    # then only the changed row is parsed again, and each read gives what the row says
    assert len(parsed) == 1
    assert [t.state for t in again] == [TaskState.FAILED, TaskState.PENDING]
    assert again[1] is first[1]
    store.close()
