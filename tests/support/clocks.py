"""Processes with a wall clock off, or stepped while they run (libfaketime).

The monotonic clock stays true in both (FAKETIME_DONT_FAKE_MONOTONIC), as on a host whose
clock is off or that NTP steps. With it, this libfaketime (0.9.10) fails Python's
`time.sleep` (EINVAL): kube's manager and its bus never sleep, and a worker sleeps only
while its engine is away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _preloaded(*settings: str) -> tuple[str, ...]:
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} is missing: apt-get install -y faketime")
    return ("env", f"LD_PRELOAD={LIBFAKETIME}", "FAKETIME_DONT_FAKE_MONOTONIC=1", *settings)


def skewed_by(offset: str) -> tuple[str, ...]:
    """A command prefix that runs a process with its wall clock off by `offset`, as Debian's
    `faketime -f OFFSET` does, but exec'd (`faketime` forks: a signal sent to it would not
    reach the process)."""
    return _preloaded(f"FAKETIME={offset}")


class SteppedClock:
    """A wall clock an offset file sets while the process runs: `step` moves it at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step("+0")

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command prefix of a process on this clock (read on every call: no cache)."""
        return _preloaded(f"FAKETIME_TIMESTAMP_FILE={self.path}", "FAKETIME_NO_CACHE=1")

    def step(self, offset: str) -> None:
        """Set the clock `offset` (e.g. "-60s") from the true time, as NTP steps one."""
        self.path.write_text(f"{offset}\n")
