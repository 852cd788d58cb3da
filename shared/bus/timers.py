"""Timers and hooks run on the bus thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.bus.connection import LOST

log = logging.getLogger("shared.bus")


@dataclass
class Timer:
    interval: float
    fn: Callable[[], None]


def fire(name: str, timer: Timer) -> None:
    """Run a timer once: a lost connection goes up to the bus loop, other errors are
    logged and the timer keeps its schedule."""
    try:
        timer.fn()
    except LOST:
        raise
    except Exception:
        log.exception("%s: timer %s failed", name, timer.fn)
