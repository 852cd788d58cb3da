"""The worker's sessions (worker/streams.py): frames, credit, lease and close, on a fake source."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from shared.errors import NoSuchContainer
from shared.sessions import EndReason, Fd, LogsParams, StreamFrame, StreamInput, StreamStart
from tests.support.waiting import wait_for
from worker.runtime.base import LogLine
from worker.streams import Session, Streams

SESSION = "0" * 32


class FakeSource:
    """Gives `lines`, then, unless `ends`, waits until closed."""

    def __init__(self, lines: list[LogLine], ends: bool = False) -> None:
        self.lines = lines
        self.ends = ends
        self.closed = threading.Event()
        self.given = 0

    def __iter__(self) -> Iterator[LogLine]:
        for line in self.lines:
            if self.closed.is_set():
                return
            self.given += 1
            yield line
        if not self.ends:
            self.closed.wait(30)

    def close(self) -> None:
        self.closed.set()

    def send(self, message: StreamInput) -> None:
        return None

    def exit_code(self) -> int | None:
        return None

    def listen(self, wake: Callable[[], None]) -> None:
        return None

    def input_taken(self) -> int | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def start(window: int = 32, lease: float = 15.0) -> StreamStart:
    return StreamStart(
        session=SESSION, task_id="t", attempt=1, logs=LogsParams(), window=window, lease=lease
    )


def line(text: str, fd: int = 1) -> LogLine:
    return LogLine(fd, None, text.encode())


def streams_on(source: FakeSource, clock: Clock) -> tuple[Streams, list[StreamFrame]]:
    sent: list[StreamFrame] = []
    streams = Streams("n1", lambda _start: source, sent.append, lambda: None, clock)
    return streams, sent


def test_the_first_frame_comes_at_once_then_the_lines_then_the_end() -> None:
    # given a source of two lines (one on stderr) that then ends
    source = FakeSource([line("a\n"), line("b\n", fd=2)], ends=True)
    streams, sent = streams_on(source, Clock())
    # when a session starts and the bus thread flushes until it is done
    streams.start(start())
    wait_for(lambda: (streams.flush(), not streams.sessions)[1], "the session to end")
    # then frame 1 came first, the lines in order with their streams, the end last
    assert sent[0].seq == 1
    chunks = [c for frame in sent for c in frame.chunks]
    assert [(c.fd, c.data) for c in chunks] == [(Fd.STDOUT, "a\n"), (Fd.STDERR, "b\n")]
    assert [f.seq for f in sent] == list(range(1, len(sent) + 1))
    assert sent[-1].end is not None and sent[-1].end.reason == EndReason.EXITED


def test_a_client_that_does_not_acknowledge_stops_the_reading_at_the_window() -> None:
    # given a source of 1,000 lines of 1 KiB and a window of two frames (of 64 KiB)
    source = FakeSource([line(f"{i:<1023}\n") for i in range(1000)])
    clock = Clock()
    streams, sent = streams_on(source, clock)
    streams.start(start(window=2))
    # when the bus thread flushes with no ack from the client
    wait_for(lambda: (streams.flush(), len(sent) >= 2)[1], "two frames")
    streams.flush()
    # then no more than the window was sent, and the reader waits
    assert len(sent) == 2
    wait_for(lambda: source.given < 1000 and source.given > 0, "the reader to wait")
    given = source.given
    streams.flush()
    assert len(sent) == 2 and source.given <= given + 1
    # when the client acknowledges, more comes
    streams.heard(StreamInput(session=SESSION, ack=2))
    wait_for(lambda: (streams.flush(), len(sent) > 2)[1], "more frames after the ack")
    streams.close()


def test_a_session_nobody_renews_ends_with_its_lease_and_its_reader_stops() -> None:
    source = FakeSource([line("a\n")])
    clock = Clock()
    streams, sent = streams_on(source, clock)
    streams.start(start(lease=5))
    session: Session = streams.sessions[SESSION]
    # when the lease passes without any input
    clock.now = 6.0
    streams.flush()
    # then the session ended as expired, its source is closed and its thread gone
    assert sent[-1].end is not None and sent[-1].end.reason == EndReason.EXPIRED
    assert source.closed.is_set() and not streams.sessions
    session.thread.join(5)
    assert not session.thread.is_alive()


def test_a_close_from_the_client_ends_the_session_at_once() -> None:
    source = FakeSource([])
    streams, sent = streams_on(source, Clock())
    streams.start(start())
    session = streams.sessions[SESSION]
    streams.heard(StreamInput(session=SESSION, close=True))
    assert sent[-1].end is not None and sent[-1].end.reason == EndReason.CLOSED
    session.thread.join(5)
    assert not session.thread.is_alive() and not streams.sessions


def test_a_session_on_a_container_the_node_does_not_hold_ends_as_not_found() -> None:
    def missing(_start: StreamStart) -> FakeSource:
        raise NoSuchContainer("no container kube.n1.t.1 on node n1")

    sent: list[StreamFrame] = []
    streams = Streams("n1", missing, sent.append, lambda: None, Clock())
    streams.start(start())
    wait_for(lambda: (streams.flush(), not streams.sessions)[1], "the session to end")
    assert sent[-1].end is not None and sent[-1].end.reason == EndReason.NOT_FOUND


def test_input_for_a_session_this_worker_does_not_know_says_it_is_lost() -> None:
    # given a worker that restarted: it holds no session
    streams, sent = streams_on(FakeSource([]), Clock())
    # when a client's renewal comes for one, then it is told the session is lost
    streams.heard(StreamInput(session=SESSION, ack=3))
    assert [f.end.reason for f in sent if f.end] == [EndReason.LOST]
    # and a close for one it does not know needs no answer
    streams.heard(StreamInput(session=SESSION, close=True))
    assert len(sent) == 1
