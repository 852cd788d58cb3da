"""What the manager admits from workers beyond the wire's own checks: new nodes, times
from the future, and how many stops one heartbeat may cause (issue 12).

Each check returns the reason a result is refused, or None; the service dead-letters a
refused result with that reason, and it changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.messages import Heartbeat

MAX_NODES = 100
"""Nodes a cluster may have by default (`kube manager --max-nodes`). Each node costs a
durable quorum queue on the broker: an unbounded number of invented node names would
exhaust the broker's file handles."""

MAX_AHEAD = timedelta(minutes=5)
"""How far ahead of the manager's clock a result may be dated. Workers' clocks may be off
by seconds or a minute (NTP keeps them closer); a result dated further ahead comes from
a clock that is broken, or from someone forging it. Results dated in the past are taken:
a manager that was down finds the exits that happened meanwhile in its queue, and those
are the truth (attempts fence any that are out of date)."""

MAX_STOPS_PER_PART = 250
"""Stops one heartbeat part may cause. A worker lists containers the manager may not
know (a task removed meanwhile, or ids it invents); each is told to stop. Past this many,
the rest are stopped on the next heartbeats, so a lying worker cannot make the manager
send a flood of messages."""

MAX_STOPS_PER_WINDOW = MAX_STOPS_PER_PART
"""Stops one node may be sent for what its heartbeats list, per heartbeat interval, however
many parts and heartbeats it sends in that time."""


@dataclass
class StopBudget:
    """How many stops each node's heartbeats may still cause in the current window."""

    window: float  # seconds: the heartbeat interval
    per_window: int = MAX_STOPS_PER_WINDOW
    _spent: dict[str, tuple[float, int]] = field(default_factory=dict)

    # `now` is the manager's monotonic clock: a step of its wall clock opens no window.
    def left(self, node: str, now: float) -> int:
        since, spent = self._spent.get(node, (now, 0))
        if now - since >= self.window:
            return self.per_window
        return max(self.per_window - spent, 0)

    def spend(self, node: str, count: int, now: float) -> None:
        since, spent = self._spent.get(node, (now, 0))
        if now - since >= self.window:
            since, spent = now, 0
        self._spent[node] = (since, spent + count)


def new_node(beat: Heartbeat, nodes: int, max_nodes: int) -> str | None:
    """Why a heartbeat from a node the manager does not know yet is refused, when the
    cluster already has `nodes`."""
    if nodes < max_nodes:
        return None
    return (
        f"node {beat.node!r} cannot join: the cluster has its maximum of {max_nodes} nodes"
        " (kube manager --max-nodes; kube rm a down node to free its place)"
    )


def seconds_ahead(at: datetime, now: datetime) -> float | None:
    """How far ahead of the manager's clock a result is dated, when that is too far."""
    ahead = (at - now).total_seconds()
    return ahead if ahead > MAX_AHEAD.total_seconds() else None


def dated_ahead(at: datetime, now: datetime) -> str | None:
    """Why a result dated too far ahead of the manager's clock is refused."""
    ahead = seconds_ahead(at, now)
    return None if ahead is None else ahead_reason(ahead)


def ahead_reason(ahead: float) -> str:
    """Why results dated `ahead` seconds ahead of the manager's clock are refused."""
    return (
        f"result dated {ahead:.0f}s ahead of the manager's clock (at most"
        f" {MAX_AHEAD.total_seconds():.0f}s): check the worker's clock (NTP)"
    )


TELL_EVERY = 60.0
"""Seconds between two notices to one node that its results are refused (ClockAhead): a
worker with a wrong clock sends a heartbeat a second, and each is refused."""

MAX_TOLD = 10_000
"""Nodes whose last notice is remembered; past this many the memory starts afresh (node
names in refused results are the sender's to choose)."""


@dataclass
class Notices:
    """When each node was last told that its results are refused, on the monotonic clock."""

    every: float = TELL_EVERY
    _told: dict[str, float] = field(default_factory=dict)

    def due(self, node: str, now: float) -> bool:
        """Whether to tell `node` now; if so, it counts as told."""
        last = self._told.get(node)
        if last is not None and now - last < self.every:
            return False
        if len(self._told) >= MAX_TOLD:
            self._told.clear()
        self._told[node] = now
        return True
