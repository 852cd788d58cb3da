"""Waiting for the broker's lock queue, said rarely: pika warns at every refused try
(RESOURCE_LOCKED, four times a second), and a long wait names the holder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SAY_EVERY = 30.0
"""Seconds between two notices of the same wait (the first is said at once)."""


class Throttle(logging.Filter):
    """Lets the records that contain `text` through the first time, then once every
    `every` seconds; the others pass untouched."""

    def __init__(
        self, text: str, every: float = SAY_EVERY, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.text, self.every, self.monotonic = text, every, monotonic
        self._said_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        now = self.monotonic()
        if self._said_at is not None and now - self._said_at < self.every:
            return False
        self._said_at = now
        return True


class Notices:
    """When a wait is due to be said again: at once, then every `every` seconds."""

    def __init__(self, every: float = SAY_EVERY) -> None:
        self.every = every
        self._said_at: float | None = None

    def due(self, now: float) -> bool:
        if self._said_at is not None and now - self._said_at < self.every:
            return False
        self._said_at = now
        return True
