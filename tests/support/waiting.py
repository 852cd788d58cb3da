"""Waiting for a condition with a timeout, instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    what: str = "condition",
    timeout: float = 30.0,
    interval: float = 0.05,
) -> T:
    """Call condition until it returns something truthy, and return that; fail after timeout.

    An exception from condition counts as not yet; the last one is shown on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - kept and shown if we time out
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error}")
