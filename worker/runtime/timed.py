"""A Runtime that wraps another and measures it: each call's duration, and every exit."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

from shared.models import TaskSpec
from shared.sessions import LogsParams
from worker.files import FileMount
from worker.metrics import EXITS, OPERATION_DURATION, exit_class, outcome
from worker.runtime.base import (
    ContainerExit,
    ContainerInfo,
    ExecOptions,
    ExecSession,
    ExitWatch,
    LogFollow,
    Runtime,
    Stray,
)


@contextmanager
def _timed(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        OPERATION_DURATION.labels(operation, outcome(error)).observe(time.perf_counter() - started)


class TimedRuntime:
    """Times each engine call by operation and outcome; counts exits by exit-code class."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner

    def ping(self) -> bool:
        with _timed("ping"):
            return self.inner.ping()

    def has_image(self, image: str) -> bool:
        return self.inner.has_image(image)

    def join(self, cluster: str) -> None:
        self.inner.join(cluster)

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        with _timed("start"):
            return self.inner.start(task_id, attempt, spec, files)

    def stop(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        with _timed("stop"):
            self.inner.stop(task_id, attempt, timeout)

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        with _timed("remove"):
            self.inner.remove(task_id, attempt, timeout)

    def logs(
        self, task_id: str, attempt: int, tail: int | None = None, limit: int | None = None
    ) -> bytes:
        with _timed("logs"):
            return self.inner.logs(task_id, attempt, tail, limit)

    def output_end(self, task_id: str, attempt: int, limit: int) -> tuple[bytes, bytes]:
        with _timed("logs"):
            return self.inner.output_end(task_id, attempt, limit)

    def follow_logs(self, task_id: str, attempt: int, params: LogsParams) -> LogFollow:
        with _timed("logs"):
            return self.inner.follow_logs(task_id, attempt, params)

    def list(self, task_id: str | None = None) -> list[ContainerInfo]:
        with _timed("list"):
            return self.inner.list(task_id)

    def address(self, task_id: str, attempt: int) -> str:
        with _timed("address"):
            return self.inner.address(task_id, attempt)

    def exec(self, task_id: str, attempt: int, command: Sequence[str]) -> int:
        with _timed("exec"):
            return self.inner.exec(task_id, attempt, command)

    def open_exec(self, task_id: str, attempt: int, options: ExecOptions) -> ExecSession:
        with _timed("open_exec"):
            return self.inner.open_exec(task_id, attempt, options)

    def strays(
        self, disowned: Collection[tuple[str, int]], limit: int
    ) -> tuple[Sequence[Stray], int]:
        with _timed("strays"):
            return self.inner.strays(disowned, limit)

    def remove_stray(self, container_id: str, disowned: Collection[tuple[str, int]]) -> None:
        with _timed("remove_stray"):
            self.inner.remove_stray(container_id, disowned)

    def adopt(self, container_id: str) -> None:
        self.inner.adopt(container_id)

    def watch_exits(
        self, on_exit: Callable[[ContainerExit], None], on_error: Callable[[Exception], None]
    ) -> ExitWatch:
        def counted(event: ContainerExit) -> None:
            EXITS.labels(exit_class(event.exit_code, event.oom_killed)).inc()
            on_exit(event)

        with _timed("watch_exits"):
            return self.inner.watch_exits(counted, on_error)

    def volumes(self) -> builtins.list[str]:
        with _timed("volumes"):
            return self.inner.volumes()

    def remove_volume(self, name: str) -> bool:
        with _timed("remove_volume"):
            return self.inner.remove_volume(name)
