"""One attempt of a task on this worker, as a state machine: events in, effects out.

Pure: nothing here calls the engine, the broker or a clock. `worker.runner` feeds each
attempt its events in the order they happened (dispatches, the engine's answers, exits,
health changes) and carries out the effects it returns, in order. Modelled on Nomad's
task runner: one object owns the attempt's whole life, and a stop that arrives while the
container is starting is held and applied once the start is done.

    NEW --run--> STARTING --started--> RUNNING --stop/unhealthy/cut_off--> STOPPING
     |               |  (stop, cut_off held)   |                               |
     |               +-------------------------|---------------------------> removed
     +--stop (nothing known: clean up)---------+--exit--> ENDED <--------------+

`cut_off` is the worker's own stop of a container whose task asked for it once the worker
has been out of touch with the broker long enough (worker/disconnect.py): the removal is
already under way when the attempt hears of it, so it only waits for `removed`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from shared.images import ImageProblem
from shared.models import Health
from shared.specs import HealthCheck, TaskSpec
from shared.states import TaskState
from worker.runtime.base import ContainerExit, ContainerInfo, ContainerStatus

D = TypeVar("D")  # a delivery to acknowledge; opaque here
Key = tuple[str, int]  # (task id, attempt)


class Phase(enum.StrEnum):
    """Where an attempt is in its life."""

    NEW = "new"  # nothing asked of it yet
    STARTING = "starting"  # the engine is starting its container
    RUNNING = "running"  # its container runs, as far as the worker knows
    STOPPING = "stopping"  # the engine is removing its container
    ENDED = "ended"  # nothing left to do: the worker forgets it


class Cause(enum.StrEnum):
    """Why an attempt's container is being removed."""

    REQUESTED = "requested"  # a StopTask: the attempt completes
    UNHEALTHY = "unhealthy"  # it failed its health checks: the attempt fails
    CLEANUP = "cleanup"  # it is not running (exited, or never started): nothing to report
    DISCONNECTED = "disconnected"  # the worker was out of touch too long (on_disconnect)


@dataclass(frozen=True)
class Report:
    """An update about the attempt, for the manager."""

    state: TaskState
    container_id: str | None = None
    host_ports: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    error: str | None = None
    health: Health | None = None
    last_check: str | None = None
    disconnected: float | None = None  # stopped after this many seconds out of touch
    image_problem: ImageProblem | None = None  # its image cannot be had: no restart helps


@dataclass(frozen=True)
class Start:
    """Start the attempt's container (in the engine pool); answer with `started`."""

    spec: TaskSpec


@dataclass(frozen=True)
class Remove:
    """Stop and remove the attempt's container (in the engine pool); answer with `removed`."""


@dataclass(frozen=True)
class Watch:
    """Begin probing the container's health."""

    check: HealthCheck


@dataclass(frozen=True)
class Unwatch:
    """Stop probing the container's health."""


@dataclass(frozen=True)
class Settle(Generic[D]):
    """Acknowledge a dispatch once the reports before it are confirmed."""

    delivery: D


Effect = Report | Start | Remove | Watch | Unwatch | Settle[D]


@dataclass(frozen=True)
class StartFailed:
    """The engine could not start the container, or the policy refused it."""

    error: str
    image_problem: ImageProblem | None = None  # the image cannot be had, for good


def exit_report(container_id: str, code: int, error: str | None) -> Report:
    """The report of a container that exited by itself."""
    state = TaskState.COMPLETED if code == 0 else TaskState.FAILED
    error = error or (f"exited with code {code}" if code else None)
    return Report(state, container_id=container_id, exit_code=code, error=error)


def info_report(info: ContainerInfo) -> Report:
    """The report of a container as the engine describes it."""
    if info.status == ContainerStatus.EXITED:
        return exit_report(info.container_id, info.exit_code or 0, info.error)
    return Report(TaskState.RUNNING, container_id=info.container_id, host_ports=info.host_ports)


class Attempt(Generic[D]):
    """The life of one (task, attempt) on this worker; every method returns its effects."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.phase = Phase.NEW
        self.check: HealthCheck | None = None
        self.alive = False  # reported running, and its end not yet reported
        self.last = Report(TaskState.RUNNING)  # the last running report, health included
        self.cause: Cause | None = None  # why it is STOPPING
        self._detail = ""  # the failing probe's last word, when unhealthy
        self._starts: list[D] = []  # run dispatches, acked once the start is reported
        self._stops: list[D] = []  # stop dispatches, acked once the removal has begun
        self.stop_held = False  # a stop arrived while starting: applied once started
        self.cut_after: float | None = None  # seconds out of touch when the worker cut it off
        self._exit: ContainerExit | None = None  # an exit that overtook the start or removal

    @property
    def ended(self) -> bool:
        """True when nothing is left to do: the runner may be forgotten."""
        return self.phase in (Phase.NEW, Phase.ENDED)

    # -- commands ----------------------------------------------------------------------

    def run(self, spec: TaskSpec, delivery: D) -> list[Effect[D]]:
        """A RunTask: start the container; a repeated one is answered with what is known."""
        if self.phase == Phase.NEW:
            self.phase = Phase.STARTING
            self.check = spec.health_check
            self._starts.append(delivery)
            return [Start(spec)]
        if self.phase == Phase.STARTING:
            self._starts.append(delivery)
            return []
        if self.phase == Phase.RUNNING:
            return [self.last, Settle(delivery)]
        return [Settle(delivery)]  # stopping: the removal reports

    def stop(self, delivery: D) -> list[Effect[D]]:
        """A StopTask: remove the container; held until a start in progress is done.

        The stop is acked once the removal has begun, not once it is done: a removal waits
        out the container's grace period, and stops held unacked that long filled the
        worker's prefetch, so that the next stops waited behind them and their grace
        periods added up (8 stale copies with a 10 s grace took 24 s). Should the worker
        die meanwhile, its heartbeats name the container again and the manager repeats
        the stop.
        """
        self._stops.append(delivery)
        if self.phase == Phase.STARTING:
            self.stop_held = True
            return []
        if self.phase == Phase.RUNNING:
            return [*self._remove(Cause.REQUESTED), *self._settle(self._stops)]
        if self.phase == Phase.NEW:  # not known to run: remove what may be left
            return [*self._remove(Cause.CLEANUP), *self._settle(self._stops)]
        return self._settle(self._stops)  # stopping already: that removal reports

    # -- the engine's answers ----------------------------------------------------------

    def started(self, outcome: ContainerInfo | StartFailed) -> list[Effect[D]]:
        """The start is done: report it, then apply what arrived meanwhile, in order."""
        if self.phase != Phase.STARTING:
            return []
        if isinstance(outcome, StartFailed):
            report = Report(
                TaskState.FAILED, error=outcome.error, image_problem=outcome.image_problem
            )
        else:
            report = info_report(outcome)
        effects: list[Effect[D]] = []
        if report.state == TaskState.RUNNING:
            self.phase, self.alive = Phase.RUNNING, True
            if self.check is not None:
                report = replace(report, health=Health.STARTING)
                if not self.stop_held:
                    effects.append(Watch(self.check))
            self.last = report
        else:
            self.phase = Phase.ENDED
        effects = [report, *effects, *self._settle(self._starts)]
        if self._exit is not None:
            effects += self.exited(self._exit)
        if self.cut_after is not None and self.alive:
            effects += self._cut(self.cut_after)
        elif self.stop_held:
            self.stop_held = False
            effects += self._remove(Cause.REQUESTED if self.alive else Cause.CLEANUP)
        return [*effects, *self._settle(self._stops)]

    def removed(self, error: str | None = None) -> list[Effect[D]]:
        """The removal is done (error: it failed); report how the attempt ended."""
        if self.phase != Phase.STOPPING:
            return []
        effects: list[Effect[D]] = []
        if self.cause == Cause.UNHEALTHY:
            # Failed even if the removal did: the manager restarts the task elsewhere and
            # asks again for this attempt's removal.
            effects.append(
                Report(
                    TaskState.FAILED,
                    error=f"unhealthy: {self._detail}",
                    health=Health.UNHEALTHY,
                    last_check=self._detail,
                )
            )
        elif self.cause == Cause.DISCONNECTED:
            if error is not None:  # still running: the worker tries again while cut off
                self.phase, self.cause = Phase.RUNNING, None
                return [Watch(self.check)] if self.check is not None else []
            after = self.cut_after or 0.0
            effects.append(
                Report(
                    TaskState.FAILED,
                    error=f"stopped after {after:.1f}s out of touch with the broker",
                    disconnected=after,
                )
            )
        elif error is not None and self.cause == Cause.REQUESTED and self._exit is None:
            # Still running: heartbeats keep listing it, and a repeated stop tries again.
            self.phase, self.cause = Phase.RUNNING, None
            return self._settle(self._stops)
        elif self.cause == Cause.REQUESTED:
            effects.append(
                exit_report(self._exit.container_id, self._exit.exit_code, self._exit.error)
                if error is not None and self._exit is not None
                else Report(TaskState.COMPLETED)
            )
        self.phase, self.alive = Phase.ENDED, False
        return [*effects, *self._settle(self._stops)]

    # -- events ------------------------------------------------------------------------

    def exited(self, event: ContainerExit) -> list[Effect[D]]:
        """The engine says the container stopped running."""
        if self.phase in (Phase.STARTING, Phase.STOPPING):
            self._exit = event  # applied after the start; reported if the removal fails
            return []
        if self.phase != Phase.RUNNING:
            return []
        self.phase, self.alive = Phase.ENDED, False
        self._exit = None
        unwatch: list[Effect[D]] = [Unwatch()] if self.check is not None else []
        return [*unwatch, exit_report(event.container_id, event.exit_code, event.error)]

    def cut_off(self, silent: float) -> list[Effect[D]]:
        """The worker, `silent` seconds out of touch with the broker, is removing the
        container (the task's on_disconnect); its `removed` follows."""
        if self.phase == Phase.STARTING:
            self.cut_after = silent  # applied once the start is reported
            return []
        if self.phase != Phase.RUNNING:
            return []  # being removed already, or gone: that removal reports
        return self._cut(silent)

    def health_changed(self, health: Health, detail: str) -> list[Effect[D]]:
        """The health monitor saw a change; an unhealthy container is removed."""
        if self.phase != Phase.RUNNING:
            return []  # a probe that finished after the attempt moved on
        report = self.last = replace(self.last, health=health, last_check=detail)
        if health != Health.UNHEALTHY:
            return [report]
        self._detail = detail
        return [report, *self._remove(Cause.UNHEALTHY)]

    def adopt(self, info: ContainerInfo) -> list[Effect[D]]:
        """The engine lists this attempt's container (reconciliation): report it as it is."""
        if self.phase == Phase.STOPPING and self.cause == Cause.CLEANUP:
            if info.status == ContainerStatus.RUNNING:
                # A stop reached a restarted worker before its inventory: the container runs,
                # so it is held (heartbeats list it) until removed, and the attempt completes.
                self.cause, self.alive, self.last = Cause.REQUESTED, True, info_report(info)
            return []
        if info.status == ContainerStatus.CREATED or self.phase not in (Phase.NEW, Phase.RUNNING):
            return []  # a start or removal in progress will report
        report = info_report(info)
        if report.state != TaskState.RUNNING:
            if self.phase == Phase.NEW:
                return [report]  # ended before this worker knew it: report, keep nothing
            code = info.exit_code or 0
            return self.exited(ContainerExit(*self.key, info.container_id, code, info.error))
        effects: list[Effect[D]] = []
        if self.phase == Phase.NEW:
            self.phase, self.alive, self.check = Phase.RUNNING, True, info.health_check
            if self.check is not None:
                report = replace(report, health=Health.STARTING)
                effects.append(Watch(self.check))
        else:  # known running: the same, with what the engine says now
            report = replace(
                self.last, container_id=report.container_id, host_ports=report.host_ports
            )
        self.last = report
        return [report, *effects]

    def vanished(self) -> list[Effect[D]]:
        """The engine no longer lists a container believed running: forget it quietly
        (its end is the manager's to judge from the heartbeats that stop naming it)."""
        if self.phase != Phase.RUNNING:
            return []
        self.phase, self.alive = Phase.ENDED, False
        return [Unwatch()] if self.check is not None else []

    # -- helpers -----------------------------------------------------------------------

    def _remove(self, cause: Cause) -> list[Effect[D]]:
        return [*self._stopping(cause), Remove()]

    def _cut(self, silent: float) -> list[Effect[D]]:
        self.cut_after = silent
        return self._stopping(Cause.DISCONNECTED)  # the worker removes it already

    def _stopping(self, cause: Cause) -> list[Effect[D]]:
        self.phase, self.cause = Phase.STOPPING, cause
        return [Unwatch()] if self.check is not None else []

    @staticmethod
    def _settle(deliveries: list[D]) -> list[Effect[D]]:
        settled: list[Effect[D]] = [Settle(d) for d in deliveries]
        deliveries.clear()
        return settled
