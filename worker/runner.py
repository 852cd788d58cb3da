"""The worker's attempts: one `Attempt` per (task, attempt), driven on the bus thread.

Every event reaches an attempt on the bus thread, in the order it arrived there:
dispatches directly, the engine's answers, exits and health changes through
`call_soon` (the bus's `call_threadsafe`). The effects an attempt returns are carried
out at once and in order, so the updates of one attempt leave the worker in the order
they happened. Engine calls run in the pool (`background`) and answer back through
`call_soon`. An attempt that has ended is forgotten, with its health watch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from shared.models import Health
from shared.specs import TaskSpec
from worker.attempt import (
    Attempt,
    Effect,
    Key,
    Phase,
    Remove,
    Report,
    Settle,
    Start,
    StartFailed,
    Unwatch,
    Watch,
)
from worker.health import HealthMonitor
from worker.runtime.base import ContainerExit, ContainerInfo

log = logging.getLogger(__name__)

D = TypeVar("D")
Job = Callable[[], None]


def _adopting(info: ContainerInfo) -> Callable[[Attempt[D]], list[Effect[D]]]:
    return lambda attempt: attempt.adopt(info)


class Runners(Generic[D]):
    """The live attempts of this worker and the carrying out of their effects."""

    def __init__(
        self,
        *,
        start: Callable[[Key, TaskSpec], ContainerInfo | StartFailed],
        remove: Callable[[Key], str | None],
        background: Callable[[Job], None],
        stopping: Callable[[Job], None] | None = None,
        call_soon: Callable[[Job], None],
        publish: Callable[[Key, Report], None],
        settle: Callable[[D], None],
        health: HealthMonitor,
    ) -> None:
        self._start = start  # blocking: the container's info, or why it did not start
        self._remove = remove  # blocking: None once removed, else why not
        self._background = background  # starts
        # Removals, apart: a removal waits out its container's grace period, and removals
        # behind each other (or behind starts) would add their grace periods up.
        self._stopping = stopping or background
        self._call_soon = call_soon
        self._publish = publish
        self._settle = settle
        self._health = health
        self._attempts: dict[Key, Attempt[D]] = {}
        # While the engine's containers are listed: the attempts that had events meanwhile,
        # which the list may describe as they were before. Set from the listing thread;
        # one assignment, atomic under the GIL.
        self._touched: set[Key] | None = None

    def __len__(self) -> int:
        return len(self._attempts)

    def __iter__(self) -> Iterator[Attempt[D]]:
        return iter(list(self._attempts.values()))

    def get(self, key: Key) -> Attempt[D] | None:
        return self._attempts.get(key)

    # -- events, on the bus thread -----------------------------------------------------

    def run(self, key: Key, spec: TaskSpec, delivery: D) -> None:
        self._apply(key, lambda attempt: attempt.run(spec, delivery), create=True)

    def stop(self, key: Key, delivery: D) -> None:
        self._apply(key, lambda attempt: attempt.stop(delivery), create=True)

    def exited(self, event: ContainerExit) -> None:
        key = (event.task_id, event.attempt)
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.phase == Phase.RUNNING:
            log.info("task %s: attempt %d exited with code %d", *key, event.exit_code)
        else:  # being started or removed, or ended here already: its runner knows what to do
            log.debug("task %s: exit of attempt %d with code %d", *key, event.exit_code)
        self._apply(key, lambda attempt: attempt.exited(event))

    def cut_off(self, key: Key, silent: float) -> None:
        """The worker is removing this attempt's container: out of touch too long."""
        self._apply(key, lambda attempt: attempt.cut_off(silent))

    def cut_off_done(self, key: Key, error: str | None) -> None:
        """The removal `cut_off` announced is done (error: it failed)."""
        self._apply(key, lambda attempt: attempt.removed(error))

    def health_changed(self, key: Key, health: Health, detail: str) -> None:
        self._apply(key, lambda attempt: attempt.health_changed(health, detail))

    def listing(self) -> None:
        """From any thread, just before the engine's containers are listed."""
        self._touched = set()

    def reconciled(self, found: Sequence[ContainerInfo]) -> None:
        """Apply the list of the engine's containers, except to attempts that had events
        since it was asked for: those know better, unless they are removing a container
        they did not know ran (a stop that came before the list)."""
        touched, self._touched = self._touched or set(), None
        listed = {(info.task_id, info.attempt) for info in found}
        for info in found:
            key = (info.task_id, info.attempt)
            attempt = self._attempts.get(key)
            if key not in touched or (attempt is not None and attempt.phase == Phase.STOPPING):
                self._apply(key, _adopting(info), create=True)
        for key in list(self._attempts):
            if key not in listed and key not in touched:
                self._apply(key, lambda attempt: attempt.vanished())

    def forget(self, key: Key) -> bool:
        """Drop one running attempt, reporting and removing nothing: the manager never
        placed it (its store does not know it), and it is left running as an orphan. One
        being started or removed is left to finish (a stop under way is carried out and
        its dispatch acked); whether it was dropped."""
        attempt = self._attempts.get(key)
        if attempt is None or attempt.phase != Phase.RUNNING:
            return False
        del self._attempts[key]
        self._health.forget(key)
        return True

    def forget_all(self) -> list[Key]:
        """Drop every attempt, reporting and removing nothing: the node's manager now runs
        another cluster (its database was replaced), whose containers these are not."""
        keys = list(self._attempts)
        for key in keys:
            self._health.forget(key)
        self._attempts.clear()
        return keys

    # -- carrying out ------------------------------------------------------------------

    def _apply(
        self, key: Key, event: Callable[[Attempt[D]], list[Effect[D]]], create: bool = False
    ) -> None:
        touched = self._touched
        if touched is not None:
            touched.add(key)
        attempt = self._attempts.get(key)
        if attempt is None:
            if not create:
                return
            attempt = self._attempts[key] = Attempt(key)
        for effect in event(attempt):
            self._carry_out(attempt, effect)
        if attempt.ended:
            del self._attempts[key]
            self._health.forget(key)

    def _carry_out(self, attempt: Attempt[D], effect: Effect[D]) -> None:
        key = attempt.key
        if isinstance(effect, Report):
            self._publish(key, effect)
        elif isinstance(effect, Settle):
            self._settle(effect.delivery)
        elif isinstance(effect, Start):
            self._in_pool(key, lambda: self._start(key, effect.spec), Attempt.started)
        elif isinstance(effect, Remove):
            self._in_pool(key, lambda: self._remove(key), Attempt.removed, self._stopping)
        elif isinstance(effect, Watch):
            self._health.watch(key, effect.check)
        else:
            assert isinstance(effect, Unwatch)
            self._health.forget(key)

    def _in_pool(
        self,
        key: Key,
        call: Callable[[], ContainerInfo | StartFailed] | Callable[[], str | None],
        answer: Callable[..., list[Effect[D]]],
        pool: Callable[[Job], None] | None = None,
    ) -> None:
        """Run an engine call in the pool; hand its outcome to the attempt on the bus thread."""

        def job() -> None:
            outcome = call()
            self._call_soon(lambda: self._apply(key, lambda attempt: answer(attempt, outcome)))

        (pool or self._background)(job)

    @property
    def alive(self) -> list[tuple[Key, str]]:
        """The attempts whose containers run, with their container ids (for heartbeats)."""
        return [
            (a.key, a.last.container_id)
            for a in self._attempts.values()
            if a.alive and a.last.container_id is not None
        ]
