"""Probes of the manager's own results queue: when every result sent before a moment has
been read, so that a node's silence up to then is the node's own.

The queue's depth (a passive declare) counts only what the broker has not delivered yet:
the up to MANAGER_PREFETCH deliveries already on their way to the manager, in the socket
or the client's buffers, are invisible to it. A manager that lagged behind its queue (a
slow store, a starved CPU, a stopped process) judged live nodes down while their
heartbeats sat there, and rescheduled all their tasks.

So the manager asks the queue itself. It publishes a probe (a `ResultsProbe` with an id
of its own making) to its results queue, which delivers in order to its one consumer;
once it reads the probe back, every result that entered the queue before the probe was
made has been read, heartbeats included. A node silent for node_down_after as of the
making of a probe read back, and not heard since, sent the broker nothing in that whole
interval. Silence is counted up to the probe, not up to the tick that judges it: a
heartbeat published after the probe may still wait unread behind it.

A probe may be lost (the queue purged; a reconnect forgets them all, as the deliveries
of the old channel come again): when none came back for `patience` seconds another is
sent, the wait doubling with each one out, up to MAX_PATIENCE. Any probe of this
manager's read back counts, so one that is only slow, behind a long queue, is not wasted.
A probe whose id this manager did not make (a forgery, or a former leader's) is ignored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

PATIENCE = 5.0
"""Seconds to wait for a probe before sending another (a few ticks): read back within
milliseconds by a manager that keeps up, it is lost or queued behind a long backlog."""

MAX_PATIENCE = 60.0
"""Seconds between probes, at most, while none comes back: a lost probe delays the
judgement of a dead node by no more than this."""

MAX_OUT = 16
"""Probes out at once, at most (about 13 minutes of waits): the oldest is forgotten."""


def new_probe_id() -> str:
    """A probe's id: 128 random bits, which nobody who cannot read the queue can guess."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Probe:
    """A probe sent: its id, and when it was made (monotonic; before it was published)."""

    id: str
    made: float


@dataclass
class Probes:
    """The probes out, and how far the results queue is known to have been read."""

    out: list[Probe] = field(default_factory=list)  # sent, not read back, oldest first
    read_up_to: float | None = None  # when the newest probe read back was made

    def due(self, now: float) -> bool:
        """Whether to send a probe now: none is out, or none came back for as long as the
        newest may take (PATIENCE, doubling with each one out, at most MAX_PATIENCE)."""
        if not self.out:
            return True
        wait = min(PATIENCE * 2.0 ** (len(self.out) - 1), MAX_PATIENCE)
        return now - self.out[-1].made >= wait

    def make(self, now: float, probe_id: str) -> Probe:
        """Record a probe made at `now`, about to be published."""
        probe = Probe(probe_id, now)
        self.out.append(probe)
        del self.out[:-MAX_OUT]
        return probe

    def unmake(self, probe: Probe) -> None:
        """Forget a probe that was never published (its unit was dropped)."""
        if probe in self.out:
            self.out.remove(probe)

    def read_back(self, probe_id: str) -> bool:
        """A probe came back through the queue; whether it is one of those out. The ones
        out before it were ahead of it in the queue, and did not come: they are lost."""
        for i, probe in enumerate(self.out):
            if probe.id == probe_id:
                del self.out[: i + 1]
                if self.read_up_to is None or probe.made > self.read_up_to:
                    self.read_up_to = probe.made
                return True
        return False

    def overtaken(self) -> None:
        """A result was put back in the queue (its handling failed for the broker's or the
        database's sake): it may come after the probes out, which so prove nothing."""
        self.out.clear()

    def forget(self) -> None:
        """After a reconnect: the old channel's deliveries come again, so nothing is known
        to be read, and no probe out is awaited."""
        self.out.clear()
        self.read_up_to = None
