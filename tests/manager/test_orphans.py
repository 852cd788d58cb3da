"""A manager never stops what it never placed: what it stops and what it reports (issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from manager import core, nodes, orphans
from manager.nodes import Where
from manager.scheduler import RoundRobin
from shared.messages import Heartbeat, HeldTask, Orphan
from shared.models import NodeRecord, NodeStatus, TaskRecord, TaskSpec
from shared.states import TaskState

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CLUSTER = "c0ffee00"


def running(task_id: str = "t1", attempt: int = 1) -> TaskRecord:
    node = NodeRecord(
        name="n1", status=NodeStatus.READY, cpus=2, memory=1024**3, disk=1024**3, last_heartbeat=NOW
    )
    accepted = core.accept(TaskSpec(name="a", image="b"), task_id, NOW).tasks[0]
    placed = core.schedule([accepted], [node], RoundRobin(), NOW).tasks[-1]
    return placed.model_copy(update={"state": TaskState.RUNNING, "attempt": attempt})


def beat(*held: tuple[str, int], found: tuple[Orphan, ...] = (), left_out: int = 0) -> Heartbeat:
    return Heartbeat(
        node="n1",
        at=NOW,
        cpus=2,
        memory=1024,
        disk=1024,
        cluster=CLUSTER,
        inventory=True,
        tasks=tuple(
            HeldTask(task_id=t, attempt=a, state=TaskState.RUNNING, container_id="c")
            for t, a in held
        ),
        orphans=found,
        orphans_left_out=left_out,
    )


def orphan(task_id: str = "old-1a2b3c4d", attempt: int = 1, cluster: str = "other") -> Orphan:
    return Orphan(
        task_id=task_id,
        attempt=attempt,
        container_id=f"{task_id}-container-id",
        name=f"kube.n1.{task_id}.{attempt}",
        image="busybox",
        cluster=cluster,
        host_ports={"80": 8080},
        spec=TaskSpec(name="old", image="busybox", ports=(80,)),
    )


def stopped(decision: object) -> list[tuple[str, int]]:
    bodies = [json.loads(o.body) for o in decision.outgoing]  # type: ignore[attr-defined]
    return [(b["task_id"], b["attempt"]) for b in bodies if b["kind"] == "stop"]


# -- the decision: stop what the store placed and should not run, report the rest ----------


def test_a_container_of_a_task_the_store_does_not_know_is_left_running() -> None:
    # given a store that knows nothing (deleted, restarted on an empty one)
    part = beat(("web-1", 1), ("db-2", 3))
    # then nothing is stopped, and both are strays to report
    assert stopped(nodes.superseded(part, {}, {})) == []
    assert [(h.task_id, h.attempt) for h in orphans.strays(part, {}, {})] == [
        ("web-1", 1),
        ("db-2", 3),
    ]


def test_an_attempt_newer_than_the_store_knows_is_left_running() -> None:
    # given an older copy of the store: t1 at attempt 1 there, attempt 2 runs on the node
    where = {"t1": Where.of(running("t1", attempt=1))}
    part = beat(("t1", 2))
    # then attempt 2 (never placed by this store) is not stopped, but reported
    assert stopped(nodes.superseded(part, where, {})) == []
    assert [h.attempt for h in orphans.strays(part, where, {})] == [2]


def test_what_the_store_placed_and_should_not_run_is_still_stopped() -> None:
    # given t1 running attempt 2 elsewhere, and t2 ended at attempt 1 (it holds none)
    where = {"t1": Where.of(running("t1", attempt=2).model_copy(update={"node": "n2"}))}
    part = beat(("t1", 1), ("t2", 1))
    # then the superseded attempt and the ended task's container are stopped
    assert stopped(nodes.superseded(part, where, {"t2": 1})) == [("t1", 1), ("t2", 1)]
    assert orphans.strays(part, where, {"t2": 1}) == []


def test_an_ended_task_at_an_older_attempt_than_its_container_is_an_orphan() -> None:
    part = beat(("t2", 4))
    assert stopped(nodes.superseded(part, {}, {"t2": 3})) == []
    assert [h.task_id for h in orphans.strays(part, {}, {"t2": 3})] == ["t2"]


def test_the_current_attempt_is_neither_stopped_nor_reported() -> None:
    where = {"t1": Where.of(running("t1"))}
    assert stopped(nodes.superseded(beat(("t1", 1)), where, {})) == []
    assert orphans.strays(beat(("t1", 1)), where, {}) == []


# -- the book: the latest list each node reported ---------------------------------------------


def test_the_book_keeps_the_latest_list_of_each_node() -> None:
    book = orphans.Book()
    book.heard(beat(found=(orphan("a-1"), orphan("b-2")), left_out=3), {}, {})
    assert [o.task_id for _, o in book.all()] == ["a-1", "b-2"]
    assert book.nodes["n1"].count == 5
    assert book.left_out() == 3
    book.heard(beat(found=(orphan("b-2"),)), {}, {})
    assert [o.task_id for _, o in book.all()] == ["b-2"]
    book.heard(beat(), {}, {})
    assert book.all() == [] and "n1" not in book.nodes


def test_an_orphan_is_named_by_container_id_prefix_task_id_or_name() -> None:
    book = orphans.Book()
    one = orphan("a-1")
    book.heard(beat(found=(one, orphan("b-2"))), {}, {})
    assert book.find("a-1-co") == [("n1", one)]
    assert book.find("a-1") == [("n1", one)]
    assert book.find("kube.n1.a-1.1") == [("n1", one)]
    assert book.find("a-1-c") == []  # too short a prefix to name a container
    assert book.find("a-1", node="n2") == []
    assert len(book.find(None)) == 2


# -- adoption -----------------------------------------------------------------------------------


def test_adopting_records_a_running_task_from_the_container_and_tells_the_worker() -> None:
    found = orphan("old-1a2b3c4d", attempt=2)
    decision = orphans.adopt("n1", found, None, CLUSTER, NOW, address="10.0.0.5")
    assert isinstance(decision, type(decision)) and not isinstance(decision, orphans.Refused)
    task = decision.tasks[0]
    assert (task.id, task.attempt, task.node, task.state) == (
        "old-1a2b3c4d",
        2,
        "n1",
        TaskState.RUNNING,
    )
    assert task.spec.image == "busybox" and task.endpoints == ("10.0.0.5:8080",)
    assert "cluster other" in (decision.events[0][1].detail or "")
    told = json.loads(decision.outgoing[-1].body)
    assert told == {
        "kind": "adopt-orphan",
        "epoch": 0,  # stamped by the leader as it publishes (manager/epochs.py)
        "task_id": "old-1a2b3c4d",
        "attempt": 2,
        "container_id": found.container_id,
    }
    assert decision.outgoing[-1].routing_key == "n1"


def test_an_orphan_whose_spec_cannot_be_read_is_refused_with_the_reason() -> None:
    found = orphan().model_copy(update={"spec": None, "unrecoverable": "it uses host mounts"})
    refused = orphans.adopt("n1", found, None, CLUSTER, NOW)
    assert isinstance(refused, orphans.Refused)
    assert "it uses host mounts" in refused.sentence()


def test_an_orphan_whose_task_id_the_store_has_is_refused() -> None:
    refused = orphans.adopt("n1", orphan("t1", attempt=3), running("t1"), CLUSTER, NOW)
    assert isinstance(refused, orphans.Refused)
    assert refused.why is orphans.Refusal.TASK_EXISTS


def test_an_adopted_orphan_a_restarted_worker_lists_again_is_told_again_and_held() -> None:
    # given o adopted as task a-1 attempt 1 on n1, and a restarted worker listing it as orphan
    where = {"a-1": Where("n1", 1, TaskState.RUNNING)}
    part = beat(found=(orphan("a-1"),))
    containers = {"a-1": orphan("a-1").container_id}
    book = orphans.Book()
    book.heard(part, where, containers)
    # then it is not listed, it counts as held, and the worker is told again
    assert book.all() == []
    assert nodes.missing(part, {"a-1": 1}, book.adopted["n1"]) == []
    told = [json.loads(o.body)["kind"] for o in orphans.readopt(part, where, containers).outgoing]
    assert told == ["adopt-orphan"]


def test_another_clusters_container_under_a_reused_task_id_is_not_taken_for_ours() -> None:
    # given this cluster placing a1 attempt 1 on n1 (not started: no container yet), and
    # the old cluster's container of the same task id and attempt there
    where = {"a-1": Where("n1", 1, TaskState.SCHEDULED)}
    part = beat(found=(orphan("a-1"),))
    book = orphans.Book()
    book.heard(part, where, {"a-1": None})
    # then it stays an orphan: neither adopted nor held for the task
    assert [o.task_id for _, o in book.all()] == ["a-1"] and "n1" not in book.adopted
    assert orphans.readopt(part, where, {"a-1": None}).outgoing == []


def test_ambiguous_or_unknown_ids_are_refused() -> None:
    assert isinstance(orphans.choose([], "x"), orphans.Refused)
    two = [("n1", orphan("a-1")), ("n2", orphan("a-1"))]
    refused = orphans.choose(two, "a-1")
    assert isinstance(refused, orphans.Refused) and "several" in refused.sentence()


# -- one rule for adopt and ADOPTABLE; a removal asked holds off an adoption ---------------


def test_adoptable_is_what_adopt_would_do_and_the_reason_names_the_same_attempt() -> None:
    # given an orphan of t1 attempt 1 on n1, while the store has t1 attempt 1 placed on n2
    known = running("t1").model_copy(update={"node": "n2"})
    found = orphan("t1")
    # then adopting it is refused, saying it is another copy of the same attempt
    refused = orphans.adopt("n1", found, known, CLUSTER, NOW)
    assert isinstance(refused, orphans.Refused) and refused.why is orphans.Refusal.TASK_EXISTS
    assert "at this attempt (1, running on n2)" in refused.sentence()
    assert "another attempt" not in refused.sentence()
    # and the listing says the same, by the same rule
    listed = orphans.listing([("n1", found)], judge=lambda o: orphans.refusal(o, known)).orphans
    assert not listed[0].adoptable and listed[0].unrecoverable == refused.sentence()
    # while an older attempt known is said as such
    older = orphans.adopt("n1", orphan("t1", attempt=3), known, CLUSTER, NOW)
    assert isinstance(older, orphans.Refused)
    assert "at attempt 1 (running on n2), not this container's attempt 3" in older.sentence()


def test_an_orphan_asked_to_be_removed_is_not_adopted_until_its_worker_answers() -> None:
    book = orphans.Book()
    found = orphan("o-1")
    book.heard(beat(found=(found,)), {}, {})
    # when a person asks to remove it
    book.asked_removal(book.find("o-1"))
    # then adopting it is refused, and it is not listed as adoptable
    refused = orphans.adopt("n1", found, None, CLUSTER, NOW, removing=book.being_removed(found))
    assert isinstance(refused, orphans.Refused) and refused.why is orphans.Refusal.REMOVING
    # and once its node no longer lists it, the removal is over
    book.heard(beat(), {}, {})
    assert not book.being_removed(found)
    # and a removal its worker failed is given up after REMOVAL_BEATS heartbeats listing it
    book.heard(beat(found=(found,)), {}, {})
    book.asked_removal(book.find("o-1"))
    for _ in range(orphans.REMOVAL_BEATS):
        book.heard(beat(found=(found,)), {}, {})
    assert not book.being_removed(found)


def test_a_task_id_of_a_reported_orphan_is_refused_to_a_submit() -> None:
    book = orphans.Book()
    book.heard(beat(found=(orphan("atkw1", cluster=CLUSTER),)), {}, {})
    clash = orphans.clash(book, "atkw1")
    assert clash is not None and clash.why is orphans.Refusal.TASK_ID_TAKEN
    assert "orphan container's on node n1" in clash.sentence()
    assert orphans.clash(book, "other") is None


def test_a_container_id_prefix_too_short_is_said_so() -> None:
    book = orphans.Book()
    book.heard(beat(found=(orphan("abcdef-1"),)), {}, {})
    assert book.find("abcde") == []
    assert orphans.unknown(book, "abcde").why is orphans.Refusal.TOO_SHORT
    assert "at least 6 characters" in orphans.unknown(book, "abcde").sentence()
    assert orphans.unknown(book, "zzz").why is orphans.Refusal.UNKNOWN


def test_the_left_out_orphans_are_counted_per_node() -> None:
    book = orphans.Book()
    book.heard(beat(found=(orphan(),), left_out=24), {}, {})
    assert book.left_out("n1") == book.left_out() == 24 and book.left_out("n2") == 0


def test_the_orphans_of_a_name_are_counted() -> None:
    book = orphans.Book()
    book.heard(beat(found=(orphan("web-1a2b3c4d"), orphan("db-1a2b3c4d"))), {}, {})
    assert book.named("old") == 2  # the spec read back names them
    unread = orphan("web-9f9f9f9f").model_copy(update={"spec": None})
    book.heard(beat(found=(unread,)), {}, {})
    assert book.named("web") == 1
