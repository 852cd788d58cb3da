"""How long this worker has been out of touch with the broker, and the containers to stop
once it has been for long enough (a task's `on_disconnect.stop_after_seconds`).

A worker cut off from the broker cannot hear the manager, which calls its node down and
places its tasks elsewhere. A task that asked for it must then not run twice: once the
worker has been out of touch for the task's S seconds it stops the container itself,
with no broker, and reports it when it is back. The manager places the replacement only
after S plus a margin (manager/nodes.py `DISCONNECT_MARGIN`), counted from the last
heartbeat it heard.

"In touch" is measured on the monotonic clock, from the start of the last publish of a
heartbeat that the broker confirmed: the manager cannot have heard from this worker
later than that, so the worker never counts from a later moment than the manager does.
Everything here is called from several threads (the bus thread touches, the engine pool
tracks and forgets, the watch thread stops), hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Set

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (task id, attempt)

KILL_GRACE = 2.0
"""Seconds a container stopped for being cut off has between SIGTERM and SIGKILL: short,
since the manager places its replacement soon after (its margin covers this)."""

POLL_INTERVAL = 0.1
"""Seconds between two looks at the time out of touch."""


def overdue(tracked: Mapping[Key, float], cut: Set[Key], silent: float) -> list[Key]:
    """The containers to stop now: those whose stop_after has passed, not already cut."""
    return sorted(key for key, after in tracked.items() if silent >= after and key not in cut)


class Contact:
    """The worker's time out of touch with the broker and the containers that asked to be
    stopped after some of it; thread-safe."""

    def __init__(self, floor: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        """`floor`: the shortest stop_after honoured (`least_stop_after`)."""
        self._floor = floor
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()  # a worker that never reached the broker counts from its start
        self._tracked: dict[Key, float] = {}  # container -> stop after this many seconds
        self._cut: set[Key] = set()  # being stopped (or stopped) for being cut off

    def now(self) -> float:
        return self._clock()

    def touch(self, at: float) -> None:
        """The broker confirmed a heartbeat published at `at` (a monotonic time)."""
        with self._lock:
            self._since = max(self._since, at)

    def out_of_touch(self) -> float:
        """Seconds since the last moment this worker knows the broker had its heartbeat."""
        with self._lock:
            return self._clock() - self._since

    def track(self, key: Key, stop_after: float | None) -> None:
        """A container runs; stop it after `stop_after` seconds out of touch (None: never)."""
        if stop_after is None:
            return
        with self._lock:
            self._tracked[key] = max(stop_after, self._floor)

    def forget(self, key: Key) -> None:
        """The container is gone (exited or removed)."""
        with self._lock:
            self._tracked.pop(key, None)
            self._cut.discard(key)

    def due(self) -> list[tuple[Key, float]]:
        """The containers to stop now, each once, with the seconds out of touch so far."""
        with self._lock:
            silent = self._clock() - self._since
            keys = overdue(self._tracked, self._cut, silent)
            self._cut.update(keys)
        return [(key, silent) for key in keys]

    def retry(self, key: Key) -> None:
        """Stopping the container failed: try again at the next look."""
        with self._lock:
            self._cut.discard(key)

    def is_cut(self, key: Key) -> bool:
        """Whether the container is being (or was) stopped for being cut off."""
        with self._lock:
            return key in self._cut


class Watch:
    """A thread that stops the containers `Contact.due` names, calling `stop(key, silent)`."""

    def __init__(
        self,
        contact: Contact,
        stop: Callable[[Key, float], None],
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._contact = contact
        self._stop = stop
        self._interval = interval
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-disconnect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            for key, silent in self._contact.due():
                try:
                    self._stop(key, silent)
                except Exception:  # the watch must go on for the other containers
                    log.exception("task %s: stopping attempt %d when cut off failed", *key)
                    self._contact.retry(key)
