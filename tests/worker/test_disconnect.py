"""The worker's time out of touch with the broker, and what it stops after how long."""

from __future__ import annotations

import threading

from shared.specs import least_stop_after
from tests.support.waiting import wait_for
from worker.disconnect import Contact, Watch, overdue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_containers_past_their_stop_after_and_not_yet_cut_are_due() -> None:
    tracked = {("a", 1): 5.0, ("b", 1): 10.0, ("c", 2): 5.0}
    assert overdue(tracked, set(), 4.9) == []
    assert overdue(tracked, {("c", 2)}, 5.0) == [("a", 1)]
    assert overdue(tracked, set(), 12.0) == [("a", 1), ("b", 1), ("c", 2)]


def test_out_of_touch_counts_from_the_last_confirmed_heartbeat_publish() -> None:
    # given a worker that started at 100 and tracks a container to stop after 5 s
    clock = Clock()
    contact = Contact(clock=clock)
    contact.track(("a", 1), 5.0)
    contact.track(("b", 1), None)  # keeps running while cut off
    # when a heartbeat published at 102 is confirmed, then nothing for a while
    clock.now = 103.0
    contact.touch(102.0)
    contact.touch(101.0)  # an older publish confirmed later moves nothing back
    clock.now = 106.9
    assert contact.due() == []
    # then 5 s after that publish the container is due, once
    clock.now = 107.0
    assert contact.due() == [(("a", 1), 5.0)]
    assert contact.due() == []
    assert contact.is_cut(("a", 1))
    # and one whose stop failed is due again, one that is gone never
    contact.retry(("a", 1))
    assert [key for key, _ in contact.due()] == [("a", 1)]
    contact.forget(("a", 1))
    clock.now = 200.0
    assert contact.due() == [] and not contact.is_cut(("a", 1))


def test_the_watch_stops_what_is_due_and_retries_a_stop_that_raised() -> None:
    clock = Clock()
    contact = Contact(clock=clock)
    contact.track(("a", 1), 1.0)
    calls: list[tuple[str, int]] = []
    done = threading.Event()

    def stop(key: tuple[str, int], silent: float) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("engine hiccup")
        done.set()

    watch = Watch(contact, stop, interval=0.01)
    watch.start()
    try:
        clock.now = 101.0
        wait_for(done.is_set, what="the second try")
    finally:
        watch.close()
    assert calls == [("a", 1), ("a", 1)]


def test_a_stop_after_shorter_than_a_heartbeat_and_a_second_counts_as_that() -> None:
    # a worker hears from the broker once a heartbeat: 1 s would stop what is in touch
    clock = Clock()
    contact = Contact(floor=least_stop_after(2.0), clock=clock)
    contact.track(("a", 1), 1.0)
    clock.now = 102.9
    assert contact.due() == []
    clock.now = 103.0
    assert [key for key, _ in contact.due()] == [("a", 1)]
