"""When the manager last heard each node, on its own monotonic clock: what silence is.

A node record keeps `last_heartbeat`, a wall time for people and the records. Every
decision about elapsed time (a node down, a stop budget's window, a logs request's
deadline) is measured here instead, on the monotonic clock of the running manager: a
step of the wall clock (NTP, an operator) changes none of them, and no worker's clock
takes part. In memory only: a manager that starts again, or reconnects, gives every
node a full interval from then, as it gives a node that reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


def silence(
    names: Iterable[str], heard: Mapping[str, float], since: float, now: float
) -> dict[str, float]:
    """Seconds each node has not been heard, counted from `since` at the earliest (all on
    the monotonic clock)."""
    return {name: now - max(heard.get(name, since), since) for name in names}


@dataclass
class Liveness:
    """The monotonic time each node was last heard, and since when silence may count."""

    since: float  # no node is silent for longer than since this
    heard: dict[str, float] = field(default_factory=dict)

    def hear(self, node: str, now: float) -> Callable[[], None]:
        """A node was heard at `now`; returns what undoes it (a dropped delivery)."""
        before = self.heard.get(node)
        self.heard[node] = now

        def undo() -> None:
            if before is None:
                self.heard.pop(node, None)
            else:
                self.heard[node] = before

        return undo

    def full_interval(self, now: float) -> None:
        """Silence counts from `now`: the manager could not hear anyone until then."""
        self.since = now

    def silent(self, names: Iterable[str], now: float) -> dict[str, float]:
        """Seconds each of these nodes has not been heard, as of `now`."""
        return silence(names, self.heard, self.since, now)
