"""A Runtime that simulates containers in memory: dry runs, load tests and unit tests.

A container runs until removed, unless its spec's env sets MOCK_RUN_SECONDS (a float):
then it exits after that long with MOCK_EXIT_CODE (default 0), reported to every watch.
An exec health check gets MOCK_EXEC_EXIT_CODE (default 0). Its logs are MOCK_OUTPUT if
set, else one line naming the image and command. A finished attempt started again is
reported as it ended, not run again, as Docker does.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.errors import NoSuchContainer, RuntimeFailure
from shared.models import TaskSpec
from shared.sessions import LogsParams
from worker.files import FileMount
from worker.runtime.base import (
    ContainerExit,
    ContainerInfo,
    ContainerStatus,
    ExecOptions,
    LogLine,
    Stray,
    container_name,
    foreign,
    former,
    other_cluster,
)
from worker.runtime.mock_exec import MockExecSession

log = logging.getLogger(__name__)

RUN_SECONDS_ENV = "MOCK_RUN_SECONDS"
EXIT_CODE_ENV = "MOCK_EXIT_CODE"
EXEC_EXIT_CODE_ENV = "MOCK_EXEC_EXIT_CODE"  # what exec (an exec health check) returns
OUTPUT_ENV = "MOCK_OUTPUT"  # what the container printed
FIRST_HOST_PORT = 40000
STOPPED_EXIT_CODE = 143  # 128 + SIGTERM: what a container stopped by remove() reports

ExitCallback = Callable[[ContainerExit], None]


class MockLogFollow:
    """Given lines, then a wait while `running()` says so, until close()."""

    def __init__(self, lines: list[LogLine], running: Callable[[], bool]) -> None:
        self._lines = lines
        self._running = running
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[LogLine]:
        for line in self._lines:
            if self._closed.is_set():
                return
            yield line
        while self._running() and not self._closed.wait(0.1):
            pass

    def close(self) -> None:
        self._closed.set()


@dataclass
class _Container:
    """One simulated container; mutated only under the runtime's lock."""

    task_id: str
    attempt: int
    container_id: str
    spec: TaskSpec
    host_ports: dict[str, int]
    status: ContainerStatus = ContainerStatus.CREATED
    exit_code: int | None = None
    run: int = 0  # bumped by every start, so a stale timer knows it is stale
    cluster: str | None = None  # the cluster it was started in, as Docker's label says
    timer: threading.Timer | None = field(default=None, repr=False)
    files: tuple[FileMount, ...] = ()  # mounted read-only, as Docker's would be

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            task_id=self.task_id,
            attempt=self.attempt,
            container_id=self.container_id,
            status=self.status,
            host_ports=dict(self.host_ports),
            exit_code=self.exit_code,
            health_check=self.spec.health_check,
            stop_after=(
                self.spec.on_disconnect.stop_after_seconds if self.spec.on_disconnect else None
            ),
        )

    def exit(self, code: int) -> ContainerExit:
        """Mark the container exited and say so as an engine would."""
        self.status = ContainerStatus.EXITED
        self.exit_code = code
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return ContainerExit(self.task_id, self.attempt, self.container_id, code)


def _run_plan(spec: TaskSpec) -> tuple[float | None, int]:
    """How long a container of this spec runs (None: until removed) and its exit code."""
    try:
        seconds = float(spec.env[RUN_SECONDS_ENV]) if RUN_SECONDS_ENV in spec.env else None
        code = int(spec.env.get(EXIT_CODE_ENV, "0"))
    except ValueError as exc:
        raise RuntimeFailure(f"mock: bad {RUN_SECONDS_ENV} or {EXIT_CODE_ENV}: {exc}") from exc
    return seconds, code


class MockWatch:
    """A registration for exit callbacks; close() unregisters it."""

    def __init__(self, runtime: MockRuntime, on_exit: ExitCallback) -> None:
        self._runtime = runtime
        self.on_exit = on_exit

    def close(self) -> None:
        """Stop receiving exits."""
        self._runtime._unwatch(self)


class MockRuntime:
    """Simulates a node's containers in memory, thread-safe, with no engine behind it."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.cluster: str | None = None  # labels what it starts; another's is refused
        self._lock = threading.Lock()
        self._containers: dict[tuple[str, int], _Container] = {}
        self._watches: list[MockWatch] = []
        self._next_port = FIRST_HOST_PORT
        self.adopted: set[str] = set()  # container ids counted as this cluster's (adopt)
        self.formers: set[str] = set()  # the clusters this worker was in before (join)
        self._volumes: set[str] = set()

    def ping(self) -> bool:
        """Always True: there is no engine to lose."""
        return True

    def has_image(self, image: str) -> bool:
        """Always True: a simulated container runs any image."""
        return True

    def join(self, cluster: str) -> None:
        """Belong to this cluster from now on: as Docker's runtime, another cluster's
        containers (a replaced manager database) are not listed, started or removed."""
        if self.cluster is not None and self.cluster != cluster:
            self.formers.add(self.cluster)
        self.cluster = cluster

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        """Create and run a simulated container; idempotent per (task, attempt)."""
        seconds, code = _run_plan(spec)
        with self._lock:
            container = self._theirs_refused(task_id, attempt)
            if container is None:
                self._check_free(spec.fixed_host_ports())
                self._volumes.update(v.name for v in spec.volumes)
                container = _Container(
                    task_id=task_id,
                    attempt=attempt,
                    container_id=secrets.token_hex(32),
                    spec=spec,
                    cluster=self.cluster,
                    files=tuple(files),
                    host_ports={
                        str(m.container): m.host or self._take_port() for m in spec.published()
                    },
                )
                self._containers[(task_id, attempt)] = container
            if container.status is ContainerStatus.CREATED:
                self._run(container, seconds, code)
            return container.info()

    def _check_free(self, wanted: Sequence[int]) -> None:
        """Refuse a fixed host port a container holds already, as the engine does."""
        if not wanted:
            return  # the common case costs no scan of the node's containers
        held = {
            port
            for c in self._containers.values()
            if c.status is not ContainerStatus.EXITED
            for port in c.spec.fixed_host_ports()
        }
        taken = sorted(held.intersection(wanted))
        if taken:
            raise RuntimeFailure(f"mock: host port {taken[0]} is already allocated")

    def stop(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """A running container exits, reporting it as Docker's `die` does; it stays."""
        self._end(task_id, attempt, forget=False)

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """Forget the container; a running one reports an exit, as Docker's `die` does."""
        self._end(task_id, attempt, forget=True)

    def _end(self, task_id: str, attempt: int, forget: bool) -> None:
        with self._lock:
            if self._theirs_refused(task_id, attempt) is None:
                return
            key = (task_id, attempt)
            container = self._containers.pop(key, None) if forget else self._containers.get(key)
            if container is None or container.status is not ContainerStatus.RUNNING:
                return
            stopped = container.exit(STOPPED_EXIT_CODE)
            watches = list(self._watches)
        self._notify(watches, stopped)

    def logs(
        self, task_id: str, attempt: int, tail: int | None = None, limit: int | None = None
    ) -> bytes:
        """MOCK_OUTPUT, or one line naming the image and command, as if the container had
        printed it."""
        with self._lock:
            container = self._containers.get((task_id, attempt))
        if container is None:
            name = container_name(self.node, task_id, attempt)
            raise NoSuchContainer(f"no container {name} on node {self.node}")
        spec = container.spec
        output = spec.env.get(OUTPUT_ENV, f"mock: {spec.image} {' '.join(spec.command)}\n")
        lines = output.splitlines(keepends=True)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        data = "".join(lines).encode()
        return data if limit is None else data[-limit:]

    def output_end(self, task_id: str, attempt: int, limit: int) -> tuple[bytes, bytes]:
        """Its logs as stdout; a mock container writes nothing to stderr."""
        return self.logs(task_id, attempt, None, limit), b""

    def follow_logs(self, task_id: str, attempt: int, params: LogsParams) -> MockLogFollow:
        """The output of `logs` as stdout lines (none before `since`: a mock printed it
        all at start), then, following, nothing more until the container ends."""
        shown = params.stdout and params.since is None
        data = self.logs(task_id, attempt, params.tail) if shown else b""
        lines = [LogLine(1, datetime.now(UTC), line) for line in data.splitlines(keepends=True)]

        def running() -> bool:
            with self._lock:
                found = self._containers.get((task_id, attempt))
                return found is not None and found.status is ContainerStatus.RUNNING

        return MockLogFollow(lines, running if params.follow else (lambda: False))

    def address(self, task_id: str, attempt: int) -> str:
        """Loopback: a mock container has no network of its own."""
        return "127.0.0.1"

    def exec(self, task_id: str, attempt: int, command: Sequence[str]) -> int:
        """0 while the container runs, unless its env sets MOCK_EXEC_EXIT_CODE."""
        return self._exec_exit_code(task_id, attempt)

    def open_exec(self, task_id: str, attempt: int, options: ExecOptions) -> MockExecSession:
        """A command that echoes its input (worker/runtime/mock_exec.py)."""
        return MockExecSession(options, self._exec_exit_code(task_id, attempt))

    def _exec_exit_code(self, task_id: str, attempt: int) -> int:
        """What an exec in the running container returns; RuntimeFailure if none runs."""
        with self._lock:
            container = self._containers.get((task_id, attempt))
        if container is None or container.status != ContainerStatus.RUNNING:
            name = container_name(self.node, task_id, attempt)
            raise RuntimeFailure(f"no running container {name} on node {self.node}")
        return int(container.spec.env.get(EXEC_EXIT_CODE_ENV, "0"))

    def list(self, task_id: str | None = None) -> list[ContainerInfo]:
        """Every simulated container (of one task, if given), running or not."""
        with self._lock:
            return [
                container.info()
                for container in self._containers.values()
                if self._ours(container)  # as Docker's runtime lists
                and task_id in (None, container.task_id)
            ]

    def _ours(self, container: _Container) -> bool:
        return container.cluster in (None, self.cluster) or container.container_id in self.adopted

    def _is_stray(self, container: _Container) -> bool:
        """A former cluster's container, not adopted (see `former`)."""
        return not self._ours(container) and former(container.cluster, self.cluster, self.formers)

    def _foreign(self, container: _Container) -> bool:
        """Another cluster's, not a former one: listed, never adoptable nor removed."""
        return not self._ours(container) and not self._is_stray(container)

    def strays(
        self, disowned: Collection[tuple[str, int]], limit: int
    ) -> tuple[Sequence[Stray], int]:
        """The running simulated containers of no task of this cluster (see Runtime)."""
        with self._lock:
            found = [
                c
                for c in self._containers.values()
                if c.status is ContainerStatus.RUNNING
                and (not self._ours(c) or (c.task_id, c.attempt) in disowned)
            ]
            described = [
                Stray(
                    task_id=c.task_id,
                    attempt=c.attempt,
                    container_id=c.container_id,
                    name=container_name(self.node, c.task_id, c.attempt),
                    image=c.spec.image,
                    cluster=c.cluster,
                    since=None,
                    host_ports=dict(c.host_ports),
                    spec=None if self._foreign(c) else c.spec,
                    unrecoverable=foreign(str(c.cluster)) if self._foreign(c) else None,
                )
                for c in sorted(found, key=lambda c: c.container_id)[:limit]
            ]
        return described, len(found)

    def remove_stray(self, container_id: str, disowned: Collection[tuple[str, int]]) -> None:
        """Forget a stray simulated container; RuntimeFailure if none has that id."""
        with self._lock:
            found = [
                c
                for c in self._containers.values()
                if c.container_id == container_id
                and (self._is_stray(c) or (c.task_id, c.attempt) in disowned)
            ]
            if not found:
                raise RuntimeFailure(f"no orphan container {container_id} on node {self.node}")
            container = self._containers.pop((found[0].task_id, found[0].attempt))
            container.exit(STOPPED_EXIT_CODE)  # no exit event: no task of this cluster

    def adopt(self, container_id: str) -> None:
        """Count this simulated container as this cluster's from now on."""
        with self._lock:
            self.adopted.add(container_id)

    def watch_exits(
        self, on_exit: ExitCallback, on_error: Callable[[Exception], None]
    ) -> MockWatch:
        """Call on_exit from a timer thread when a container exits; on_error is never called."""
        watch = MockWatch(self, on_exit)
        with self._lock:
            self._watches.append(watch)
        return watch

    def volumes(self) -> builtins.list[str]:
        """The volumes its containers were started with, kept until removed."""
        with self._lock:
            return sorted(self._volumes)

    def remove_volume(self, name: str) -> bool:
        """Forget a volume; refused while a running container names it, as the engine does."""
        with self._lock:
            users = [
                container_name(self.node, c.task_id, c.attempt)
                for c in self._containers.values()
                if c.status is ContainerStatus.RUNNING and name in {v.name for v in c.spec.volumes}
            ]
            if users:
                raise RuntimeFailure(f"mock: volume {name} is in use by {users[0]}")
            if name not in self._volumes:
                return False
            self._volumes.discard(name)
            return True

    def _theirs_refused(self, task_id: str, attempt: int) -> _Container | None:
        """The container of (task, attempt), or None; RuntimeFailure when another cluster
        started it, as Docker's runtime refuses it (under the lock)."""
        container = self._containers.get((task_id, attempt))
        if container is not None and not self._ours(container):
            name = container_name(self.node, task_id, attempt)
            raise RuntimeFailure(other_cluster(name, container.cluster))
        return container

    def _unwatch(self, watch: MockWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def _take_port(self) -> int:
        """The next fake host port; caller holds the lock."""
        port = self._next_port
        self._next_port += 1
        return port

    def _run(self, container: _Container, seconds: float | None, code: int) -> None:
        """Mark the container running and arm its exit; caller holds the lock."""
        container.status = ContainerStatus.RUNNING
        container.exit_code = None
        container.run += 1
        if seconds is None:
            return
        timer = threading.Timer(seconds, self._expire, (container, container.run, code))
        timer.daemon = True
        container.timer = timer
        timer.start()

    def _expire(self, container: _Container, run: int, code: int) -> None:
        """A run's time is up: exit the container unless it was removed or restarted."""
        with self._lock:
            key = (container.task_id, container.attempt)
            if self._containers.get(key) is not container or container.run != run:
                return  # removed, or started again since this timer was armed
            container.timer = None
            stopped = container.exit(code)
            watches = list(self._watches)
        self._notify(watches, stopped)

    def _notify(self, watches: Sequence[MockWatch], stopped: ContainerExit) -> None:
        """Deliver an exit outside the lock, so callbacks may call back into the runtime."""
        for watch in watches:
            try:
                watch.on_exit(stopped)
            except Exception:
                log.exception(
                    "node %s: on_exit failed for task %s attempt %s",
                    self.node,
                    stopped.task_id,
                    stopped.attempt,
                )
