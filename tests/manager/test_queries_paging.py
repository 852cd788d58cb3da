"""List replies come a page at a time, each one message, however many records there are
(issue 12: `kube ps` failed for ever past about 1,150 tasks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from manager import core
from manager.queries import PAGE_BYTES, page
from manager.store import Store
from shared.codec import encode
from shared.models import MAX_BODY_BYTES, MAX_SPEC_BYTES, TaskSpec

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def store_with(store_url: str, count: int, spec: TaskSpec | None = None) -> Store:
    store = Store(store_url)
    spec = spec or TaskSpec(name="web", image="busybox")
    for i in range(count):
        decision = core.accept(spec, f"t{i:05d}", NOW + timedelta(microseconds=i % 7))
        store.record(decision)
    store.commit()
    return store


def test_pages_walk_every_task_once_in_order(store_url: str) -> None:
    # given 2,500 tasks, some created in the same microsecond
    store = store_with(store_url, 2500)
    # when they are read a page of 1,000 at a time, each page starting after the last
    seen: list[str] = []
    after = None
    while True:
        reply = page(store.tasks_page(after, 1001), 1000)
        seen += [row["id"] for row in reply.result]
        if reply.next is None:
            break
        after = reply.next
    # then every task came once, oldest first, in three pages
    assert len(seen) == len(set(seen)) == 2500
    assert seen == [t.id for t in store.tasks()]


def test_a_page_is_cut_to_fit_one_message(store_url: str) -> None:
    # given tasks whose specs are near the largest a submit may carry
    spec = TaskSpec(name="big", image="busybox", env={"BIG": ""})
    big = spec.model_copy(update={"env": {"BIG": "x" * (MAX_SPEC_BYTES - len(encode(spec)))}})
    store = store_with(store_url, 3, big)
    # when a page of up to 1,000 is asked for
    reply = page(store.tasks_page(None, 1001), 1000)
    # then it carries one task, fits in a message, and says where to go on
    assert len(reply.result) == 1 and reply.next is not None
    assert len(encode(reply)) <= MAX_BODY_BYTES
    assert PAGE_BYTES < MAX_BODY_BYTES


def test_the_last_page_has_no_next(store_url: str) -> None:
    store = store_with(store_url, 3)
    reply = page(store.tasks_page(None, 4), 3)
    assert len(reply.result) == 3 and reply.next is None


def test_a_page_is_measured_in_bytes_not_characters(store_url: str) -> None:
    # given tasks whose specs are mostly four-byte characters, each near 960 KB as UTF-8
    spec = TaskSpec(name="uni", image="busybox", env={"K": "\U0001f600" * 230_000})
    store = store_with(store_url, 3, spec)
    # when a page is asked for, then it still fits in one message
    reply = page(store.tasks_page(None, 1001), 1000)
    assert len(encode(reply)) <= MAX_BODY_BYTES
    assert len(reply.result) == 1 and reply.next is not None
