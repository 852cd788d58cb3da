"""Probes of the manager's results queue: what is known to be read, and when to probe."""

from __future__ import annotations

from manager.silence import MAX_OUT, MAX_PATIENCE, PATIENCE, Probes, new_probe_id


def test_a_probe_is_due_when_none_is_out() -> None:
    probes = Probes()
    assert probes.due(100.0)
    probes.make(100.0, "a")
    assert not probes.due(100.0 + PATIENCE - 0.1)
    assert probes.due(100.0 + PATIENCE)


def test_the_wait_for_another_probe_doubles_with_each_out_up_to_a_bound() -> None:
    # given two probes out, the second sent once the first waited its patience
    probes = Probes()
    probes.make(0.0, "a")
    probes.make(PATIENCE, "b")
    # then the third waits twice as long after the second
    assert not probes.due(PATIENCE + 2 * PATIENCE - 0.1)
    assert probes.due(PATIENCE + 2 * PATIENCE)
    # and however many are out, never longer than MAX_PATIENCE
    for i in range(10):
        probes.make(1000.0 + i, f"p{i}")
    assert probes.due(1009.0 + MAX_PATIENCE)


def test_reading_a_probe_back_tells_up_to_when_the_queue_was_read() -> None:
    # given three probes out
    probes = Probes()
    for made, probe_id in ((1.0, "a"), (2.0, "b"), (3.0, "c")):
        probes.make(made, probe_id)
    # when the second comes back
    assert probes.read_back("b")
    # then the queue was read up to its making, and the first, which was ahead of it and
    # did not come, is lost; the third is still awaited
    assert probes.read_up_to == 2.0
    assert [p.id for p in probes.out] == ["c"]
    # and an older one coming back later moves nothing back
    assert not probes.read_back("a")
    assert probes.read_up_to == 2.0


def test_a_probe_this_manager_did_not_make_proves_nothing() -> None:
    probes = Probes()
    probes.make(1.0, "mine")
    assert not probes.read_back("forged")
    assert probes.read_up_to is None and [p.id for p in probes.out] == ["mine"]


def test_a_requeued_result_voids_the_probes_out_and_a_reconnect_everything() -> None:
    probes = Probes()
    probes.make(1.0, "a")
    assert probes.read_back("a")
    probes.make(2.0, "b")
    # a result put back may come after "b": "b" proves nothing; "a" still does
    probes.overtaken()
    assert not probes.read_back("b") and probes.read_up_to == 1.0
    # after a reconnect nothing is known to be read
    probes.forget()
    assert probes.read_up_to is None and probes.due(3.0)


def test_a_probe_never_published_is_forgotten_and_few_are_kept_out() -> None:
    probes = Probes()
    dropped = probes.make(1.0, "a")
    probes.unmake(dropped)
    assert probes.out == []
    for i in range(MAX_OUT + 3):
        probes.make(float(i), f"p{i}")
    assert len(probes.out) == MAX_OUT and probes.out[0].id == "p3"


def test_probe_ids_are_fresh() -> None:
    ids = {new_probe_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 for i in ids)
