"""Health checks, run by the worker next to its containers: http, tcp or exec probes.

One scheduler thread keeps each watched container's next due time; probes run in a small
pool so a slow one delays no other. A container is healthy after its first passing
probe and unhealthy after `failures` failing probes in a row; no probe runs during
`grace_seconds` after the start. Only changes are reported.
"""

from __future__ import annotations

import heapq
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from shared.errors import RuntimeFailure
from shared.models import Health
from shared.specs import HealthCheck
from worker import metrics
from worker.runtime.base import Runtime

log = logging.getLogger(__name__)

Key = tuple[str, int]
OnChange = Callable[[Key, Health, str], None]


def probe(runtime: Runtime, key: Key, check: HealthCheck) -> tuple[bool, str]:
    """Run one probe; (passed, what it saw)."""
    try:
        if check.exec is not None:
            code = runtime.exec(key[0], key[1], check.exec)
            return code == 0, f"exec exited {code}"
        address = runtime.address(key[0], key[1])
        if check.http is not None:
            url = f"http://{address}:{check.http.port}{check.http.path}"
            try:
                with urllib.request.urlopen(url, timeout=check.timeout_seconds) as response:
                    return 200 <= response.status < 400, f"http {response.status} from {url}"
            except urllib.error.HTTPError as exc:
                return False, f"http {exc.code} from {url}"
        assert check.tcp is not None
        target = (address, check.tcp.port)
        with socket.create_connection(target, timeout=check.timeout_seconds):
            return True, f"tcp connect to {address}:{check.tcp.port} ok"
    except (OSError, urllib.error.URLError, RuntimeFailure) as exc:
        return False, f"{type(exc).__name__}: {exc}"


@dataclass
class _Watched:
    check: HealthCheck
    health: Health = Health.STARTING
    failures: int = 0
    generation: int = 0


class HealthMonitor:
    """Probes watched containers on their intervals and reports health changes."""

    def __init__(self, runtime: Runtime, on_change: OnChange, parallel: int = 4) -> None:
        self._runtime = runtime
        self._on_change = on_change
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="probe")
        self._lock = threading.Condition()
        self._watched: dict[Key, _Watched] = {}
        self._due: list[tuple[float, Key, int]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)
        self._thread.start()

    def watch(self, key: Key, check: HealthCheck) -> None:
        """Start probing a container that just started (after its grace period)."""
        with self._lock:
            previous = self._watched.get(key)
            generation = previous.generation + 1 if previous else 1
            self._watched[key] = _Watched(check, generation=generation)
            heapq.heappush(self._due, (time.monotonic() + check.grace_seconds, key, generation))
            self._lock.notify()

    def forget(self, key: Key) -> None:
        """Stop probing a container, and keep nothing of it."""
        with self._lock:
            if self._watched.pop(key, None) is not None:
                self._due = [due for due in self._due if due[1] != key]
                heapq.heapify(self._due)

    def __len__(self) -> int:
        """How many containers are watched."""
        with self._lock:
            return len(self._watched)

    def health(self, key: Key) -> Health | None:
        with self._lock:
            watched = self._watched.get(key)
            return watched.health if watched else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._lock.wait(timeout=wait)
                if self._closed:
                    return
                _, key, generation = heapq.heappop(self._due)
                watched = self._watched.get(key)
                if watched is None or watched.generation != generation:
                    continue
            self._pool.submit(self._run, key, watched, generation)

    def _run(self, key: Key, watched: _Watched, generation: int) -> None:
        check = watched.check
        try:
            passed, detail = _with_timeout(
                lambda: probe(self._runtime, key, check), check.timeout_seconds + 1
            )
        except FutureTimeout:
            passed, detail = False, f"probe timed out after {check.timeout_seconds:g}s"
        except Exception as exc:  # a broken probe counts as failing, and checking goes on
            log.exception("task %s: health probe of attempt %d failed to run", key[0], key[1])
            passed, detail = False, f"probe error: {type(exc).__name__}: {exc}"
        metrics.probed(check, passed)
        changed: Health | None = None
        with self._lock:
            if self._watched.get(key) is not watched or watched.generation != generation:
                return
            if passed:
                watched.failures = 0
                if watched.health != Health.HEALTHY:
                    changed = watched.health = Health.HEALTHY
            else:
                watched.failures += 1
                if watched.failures >= check.failures and watched.health != Health.UNHEALTHY:
                    changed = watched.health = Health.UNHEALTHY
            if watched.health != Health.UNHEALTHY:
                due = time.monotonic() + check.interval_seconds
                heapq.heappush(self._due, (due, key, generation))
                self._lock.notify()
        if changed is not None:
            log.info("task %s: attempt %d is %s: %s", key[0], key[1], changed.value, detail)
            self._on_change(key, changed, detail)


def _with_timeout(call: Callable[[], tuple[bool, str]], timeout: float) -> tuple[bool, str]:
    """Run a probe on a helper thread and stop waiting for it after timeout."""
    result: list[tuple[bool, str]] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if error:
        raise error[0]
    if not result:
        raise FutureTimeout()
    return result[0]
