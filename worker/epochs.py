"""The newest leader epoch this worker has seen: a dispatch from an older one is refused.

A manager deposed while it was stopped (SIGSTOP, a long pause) may wake and publish what
it had decided before its lease ran out; the new leader's epoch is higher, and every
dispatch carries its sender's (shared/messages.py). Once a worker has seen an epoch, it
acks and drops any dispatch from an older one, logs it once per epoch and counts it.
In memory: a restarted worker trusts the first epoch it hears. A dispatch from a manager
from before epochs carries 0, accepted until a newer manager is heard.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Epochs:
    """The newest epoch seen, and the stale epochs already logged."""

    newest: int = 0
    logged: set[int] = field(default_factory=set)

    def admit(self, epoch: int) -> bool:
        """Whether a dispatch of this epoch may be acted on; notes a newer epoch."""
        if epoch >= self.newest:
            self.newest = epoch
            return True
        return False

    def first_refusal(self, epoch: int) -> bool:
        """Whether this stale epoch is refused for the first time (to be logged)."""
        if epoch in self.logged:
            return False
        self.logged.add(epoch)
        return True

    def forget(self) -> None:
        """Trust the next epoch heard whatever it is: the worker is in another cluster
        now (its manager's store was replaced), whose epochs start again."""
        self.newest = 0
        self.logged.clear()
