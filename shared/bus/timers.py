"""Timers and hooks run on the bus thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.bus.connection import LOST
from shared.errors import KubeError

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
    except KubeError as exc:  # a condition kube knows (a store gone...): one line
        log.warning("%s: timer %s failed: %s", name, getattr(timer.fn, "__name__", timer.fn), exc)
    except Exception:
        log.exception("%s: timer %s failed", name, timer.fn)
