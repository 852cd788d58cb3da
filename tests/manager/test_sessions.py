"""The manager's book of sessions (manager/sessions.py): relaying, renewing and ending."""

from __future__ import annotations

from datetime import UTC, datetime

from manager.sessions import Sessions
from shared.sessions import EndReason, StreamEnd, StreamFrame, StreamInput

AT = datetime(2026, 1, 1, tzinfo=UTC)


def frame(session: str, seq: int, node: str = "n1", end: bool = False) -> StreamFrame:
    done = StreamEnd(reason=EndReason.EXITED) if end else None
    return StreamFrame(node=node, at=AT, session=session, seq=seq, end=done)


def test_frames_are_relayed_to_the_opener_until_the_end_and_only_from_its_node() -> None:
    book = Sessions()
    opened = book.open("amq.rabbitmq.reply-to.x", "n1", "t", 1, lease=15, now=0)
    assert book.relayed(frame(opened.id, 1, node="n2")) is None  # another node: ignored
    assert book.relayed(frame(opened.id, 1)) is opened
    assert book.relayed(frame(opened.id, 2, end=True)) is opened
    assert len(book) == 0 and book.relayed(frame(opened.id, 3)) is None


def test_inputs_count_only_from_the_opener_and_a_close_forgets() -> None:
    book = Sessions()
    opened = book.open("amq.rabbitmq.reply-to.x", "n1", "t", 1, lease=15, now=0)
    assert book.heard(StreamInput(session=opened.id, ack=1), "amq.gen-other", 5) is None
    assert book.heard(StreamInput(session=opened.id, ack=1), opened.reply_to, 5) is opened
    assert opened.heard == 5
    book.heard(StreamInput(session=opened.id, close=True), opened.reply_to, 6)
    assert len(book) == 0


def test_sessions_end_for_a_down_node_a_silent_worker_and_a_silent_client() -> None:
    book = Sessions(start_timeout=5)
    down = book.open("amq.gen-a", "gone", "t1", 1, lease=15, now=0)
    unstarted = book.open("amq.gen-b", "n1", "t2", 1, lease=15, now=0)
    silent = book.open("amq.gen-c", "n1", "t3", 1, lease=15, now=0)
    book.relayed(frame(silent.id, 1))
    alive = book.open("amq.gen-d", "n1", "t4", 1, lease=15, now=0)
    book.relayed(frame(alive.id, 1))
    book.heard(StreamInput(session=alive.id), alive.reply_to, 10)

    # at 6 s: the down node's session and the one no worker started end
    early = book.expire(6, lambda node: node != "gone", AT)
    reasons = {e.session.id: e.frame.end.reason for e in early if e.frame.end}
    assert reasons == {down.id: EndReason.NODE_DOWN, unstarted.id: EndReason.NO_ANSWER}
    # at 16 s: the silent client's session expires, the renewed one lives on
    later = book.expire(16, lambda node: True, AT)
    assert [(e.session.id, e.frame.end and e.frame.end.reason) for e in later] == [
        (silent.id, EndReason.EXPIRED)
    ]
    assert later[0].frame.seq == 2  # after the last frame relayed
    assert len(book) == 1
