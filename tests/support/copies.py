"""Sampling the engine's live containers of some tasks, to see when a task ran twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TASK_LABEL = "kube.task-id"
ATTEMPT_LABEL = "kube.attempt"


@dataclass
class Sample:
    at: float  # monotonic
    live: dict[str, set[int]]  # task id -> attempts with a running container


@dataclass
class Copies:
    """Every `interval` seconds, which attempts of the watched tasks have a running
    container on the engines given (one docker client per engine)."""

    engines: list[Any]
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _watched: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, task_ids: Iterable[str]) -> None:
        self._watched |= set(task_ids)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="copies", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            live: dict[str, set[int]] = {}
            try:
                for engine in self.engines:
                    for container in engine.containers.list(
                        sparse=True, filters={"label": TASK_LABEL, "status": "running"}
                    ):
                        labels = container.attrs.get("Labels") or {}
                        task_id = labels.get(TASK_LABEL)
                        if task_id in self._watched:
                            live.setdefault(task_id, set()).add(int(labels[ATTEMPT_LABEL]))
            except Exception as exc:  # noqa: BLE001 - shown by the test that reads them
                self.errors.append(repr(exc))
            else:
                self.samples.append(Sample(started, live))
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0))

    def doubled(self, task_ids: Iterable[str]) -> list[tuple[float, str, set[int]]]:
        """The samples where one of these tasks had two live copies or more."""
        wanted = set(task_ids)
        return [
            (s.at, task_id, attempts)
            for s in self.samples
            for task_id, attempts in s.live.items()
            if task_id in wanted and len(attempts) > 1
        ]

    def last_seen(self, task_id: str, attempt: int) -> float | None:
        """When this attempt last had a running container, if ever."""
        seen = [s.at for s in self.samples if attempt in s.live.get(task_id, set())]
        return max(seen) if seen else None

    def first_seen(self, task_id: str, attempt: int) -> float | None:
        seen = [s.at for s in self.samples if attempt in s.live.get(task_id, set())]
        return min(seen) if seen else None

    def left_behind(self, task_ids: Iterable[str]) -> list[tuple[str, int, str]]:
        """The containers of these tasks on any engine, now, that do not run: (task id,
        attempt, state), for a stopped copy that was not removed."""
        wanted = set(task_ids)
        found = []
        for engine in self.engines:
            for container in engine.containers.list(
                all=True, sparse=True, filters={"label": TASK_LABEL}
            ):
                labels = container.attrs.get("Labels") or {}
                state = str(container.attrs.get("State") or "")
                if labels.get(TASK_LABEL) in wanted and state != "running":
                    found.append((labels[TASK_LABEL], int(labels[ATTEMPT_LABEL]), state))
        return sorted(found)

    def live_now(self) -> Counter[str]:
        """Copies of each task in the last sample."""
        last = self.samples[-1].live if self.samples else {}
        return Counter({task_id: len(attempts) for task_id, attempts in last.items()})
