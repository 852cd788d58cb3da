"""The interface between the worker and a container engine, in kube's own types."""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.sessions import LogsParams
from shared.specs import HealthCheck, TaskSpec
from worker.files import FileMount

TASK_LABEL = "kube.task-id"
ATTEMPT_LABEL = "kube.attempt"
NODE_LABEL = "kube.node"
HEALTH_LABEL = "kube.health-check"
CLUSTER_LABEL = "kube.cluster"
"""The id of the cluster (its manager) a container belongs to: two clusters sharing an
engine, even with the same node names, never touch each other's containers."""


def belongs(labels: Mapping[str, str], cluster: str | None) -> bool:
    """Whether a container with these labels is the given cluster's: it carries the
    cluster's id, or none at all (made by a kube from before cluster ids, adopted by
    whichever cluster's worker of that node name finds it)."""
    return labels.get(CLUSTER_LABEL) in (None, cluster)


def former(label: str | None, cluster: str | None, formers: AbstractSet[str]) -> bool:
    """Whether a container whose cluster label is `label` is of a cluster this worker
    was in before its manager named another (its database was replaced): an orphan to
    adopt or remove. Another cluster's, one this worker never was in, may be live
    (another `kube up` on the same engine, with the same node names): listed, so that
    its own manager may tell it again of a container it adopted, but with no spec
    (`foreign`), never adoptable, and never removed (docs/orphans.md)."""
    return label is not None and label != cluster and label in formers


def foreign(label: str) -> str:
    """Why another cluster's container (not a former one, see `former`) is no orphan to
    adopt or remove."""
    return (
        f"it carries cluster {label}'s id, a cluster this worker was never in: it may be"
        " another cluster's, live on this engine; it is left alone"
    )


MANAGED_LABEL = "kube.managed"  # on a volume: made by kube (docs/volumes.md)
VOLUME_LABEL = "kube.volume"  # on a volume: its name in kube, without the node's prefix
STOP_AFTER_LABEL = "kube.stop-after-seconds"  # the spec's on_disconnect, for a restarted worker


def other_cluster(name: str, cluster: str | None) -> str:
    """Why a container of another kube cluster is not touched, and what a person may do."""
    return (
        f"container {name} belongs to another kube cluster ({cluster}) on this engine,"
        " never touched from this one: if this manager's database was replaced, adopt or"
        f" remove the old cluster's containers (kube ps --orphans; kube orphans remove --all"
        f" --cluster {cluster}); if two clusters share this engine, give this node another"
        " --name in one of them"
    )


class ContainerStatus(enum.StrEnum):
    """What the engine says of a container."""

    CREATED = "created"  # made, not started
    RUNNING = "running"
    EXITED = "exited"  # stopped or finished; exit_code is set


@dataclass(frozen=True)
class ContainerInfo:
    """One container of one attempt of a task."""

    task_id: str
    attempt: int
    container_id: str
    status: ContainerStatus
    host_ports: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    error: str | None = None  # e.g. "out of memory (OOMKilled)"
    health_check: HealthCheck | None = None  # as the spec asked, so a restarted worker resumes
    stop_after: float | None = None  # on_disconnect.stop_after_seconds, likewise


@dataclass(frozen=True)
class ContainerExit:
    """A container of this node stopped running."""

    task_id: str
    attempt: int
    container_id: str
    exit_code: int
    error: str | None = None  # for people; what it says is not parsed
    oom_killed: bool = False  # the kernel's OOM killer ended it


@dataclass(frozen=True)
class Stray:
    """A running container of this node that is no task of its cluster: another cluster's,
    or one the manager disowned (its store does not know it). Left running, reported."""

    task_id: str
    attempt: int
    container_id: str
    name: str
    image: str
    cluster: str | None
    since: datetime | None
    host_ports: dict[str, int] = field(default_factory=dict)
    spec: TaskSpec | None = None  # as the container says, for adoption
    unrecoverable: str | None = None  # why no spec could be read from it


def container_name(node: str, task_id: str, attempt: int) -> str:
    """The engine-wide name of an attempt's container: a second start finds the first."""
    return f"kube.{node}.{task_id}.{attempt}"


class OutputFd(enum.IntEnum):
    """Which stream of an exec a chunk of output came from (a tty merges both into stdout)."""

    STDOUT = 1
    STDERR = 2


@dataclass(frozen=True)
class ExecOptions:
    """How to run a command in a task's container (`kube exec`)."""

    command: tuple[str, ...]
    tty: bool = False  # a pseudo-terminal: stdout and stderr merged, window size, Ctrl-C
    stdin: bool = False  # the command reads what the caller writes
    rows: int = 24  # the terminal's size, with tty
    cols: int = 80


class ExecSession(Protocol):
    """A command running in a container, its input and output as bytes. read() blocks;
    the other methods may be called from any thread. close() ends it: the command and
    everything it started in the container are killed if still running."""

    def read(self) -> tuple[OutputFd, bytes] | None:
        """The next chunk of output, or None once the command closed its output."""
        ...

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin (with tty, a terminal's keystrokes)."""
        ...

    def close_input(self) -> None:
        """End the command's stdin (end of file), as `echo hi | kube exec T -- cat` does."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's window size (tty only; otherwise ignored)."""
        ...

    def signal(self, name: str) -> None:
        """Send the command the signal of that name (`INT`, `TERM`...), without a tty's
        help: a terminal's Ctrl-C is the byte 0x03 written, not this."""
        ...

    def exit_code(self) -> int | None:
        """The command's exit code once it ended, None while it runs."""
        ...

    def close(self) -> None:
        """Kill the command if it still runs, and release the connection; idempotent."""
        ...


class ExitWatch(Protocol):
    """A running watch of container exits; close() ends it."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class LogLine:
    """A piece of a container's output as the engine logged it: one line, mostly."""

    fd: int  # 1 stdout, 2 stderr
    at: datetime | None  # when the engine logged it
    data: bytes


class LogFollow(Protocol):
    """A container's output as it is written (an iterator of LogLine); close() ends it
    from any thread, and the iteration then stops."""

    def __iter__(self) -> Iterator[LogLine]: ...

    def close(self) -> None: ...


class Runtime(Protocol):
    """What the worker needs from a container engine. Methods block; call them off the
    bus thread. Every method may raise RuntimeFailure (EngineUnavailable, ImageNotFound)."""

    def ping(self) -> bool:
        """True when the engine answers."""
        ...

    def has_image(self, image: str) -> bool:
        """True when the engine holds the image, so that a start needs no pull."""
        ...

    def join(self, cluster: str) -> None:
        """Belong to this cluster from now on: new containers carry its id, and only its
        containers (and unlabelled ones) are listed, watched and touched; the cluster it
        was in before, if any, is remembered as a former one (see `former`)."""
        ...

    def start(
        self, task_id: str, attempt: int, spec: TaskSpec, files: Sequence[FileMount] = ()
    ) -> ContainerInfo:
        """Pull per the spec's policy, create and start; idempotent per (task, attempt).
        `files` (worker/files.py) are mounted read-only, outside the mount policy: the
        worker wrote them."""
        ...

    def stop(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """Stop (SIGTERM, then SIGKILL after timeout), keeping the container and its output
        to read; fine if stopped or gone already. `remove` follows."""
        ...

    def remove(self, task_id: str, attempt: int, timeout: float = 10.0) -> None:
        """Stop (SIGTERM, then SIGKILL after timeout) and remove; fine if already gone."""
        ...

    def logs(
        self, task_id: str, attempt: int, tail: int | None = None, limit: int | None = None
    ) -> bytes:
        """The container's stdout and stderr, interleaved, the last `tail` lines if given;
        at most the last `limit` bytes, without holding more than about twice that."""
        ...

    def output_end(self, task_id: str, attempt: int, limit: int) -> tuple[bytes, bytes]:
        """The last `limit` bytes of the container's stdout, and of its stderr, apart: the
        end of an ended attempt's output, for the manager to keep (worker/attempt_output.py)."""
        ...

    def follow_logs(self, task_id: str, attempt: int, params: LogsParams) -> LogFollow:
        """The container's output line by line, stdout and stderr told apart, each with
        its time (`params` as `docker logs` takes them); following, what it writes next
        too, until it stops or close()."""
        ...

    def list(self, task_id: str | None = None) -> list[ContainerInfo]:
        """Every container this node owns (of one task, if given), running or not."""
        ...

    def address(self, task_id: str, attempt: int) -> str:
        """The IP address at which the container's ports answer from this host."""
        ...

    def exec(self, task_id: str, attempt: int, command: Sequence[str]) -> int:
        """Run a command in the running container; return its exit code."""
        ...

    def open_exec(self, task_id: str, attempt: int, options: ExecOptions) -> ExecSession:
        """Start a command in the running container and attach to it (`kube exec`)."""
        ...

    def strays(
        self, disowned: Collection[tuple[str, int]], limit: int
    ) -> tuple[Sequence[Stray], int]:
        """The running containers of this node that are no task of its cluster (a former
        cluster's, see `former`, or the `disowned` attempts), the first `limit` of them
        described, and how many there are in all."""
        ...

    def remove_stray(self, container_id: str, disowned: Collection[tuple[str, int]]) -> None:
        """Stop and remove a stray container (see `strays`); RuntimeFailure if the id
        names none."""
        ...

    def adopt(self, container_id: str) -> None:
        """Count this container as this cluster's from now on, whatever its labels say
        (Docker cannot change a container's labels): it is listed, watched and touched."""
        ...

    def watch_exits(
        self, on_exit: Callable[[ContainerExit], None], on_error: Callable[[Exception], None]
    ) -> ExitWatch:
        """Call on_exit (from a background thread) for each container of this node that
        stops running, from the engine's event stream; on_error once if the stream breaks."""
        ...

    def volumes(self) -> builtins.list[str]:
        """The names of the volumes this node's tasks made on the engine (start() makes
        each volume a spec names, labelled as kube's, when the engine lacks it)."""
        ...

    def remove_volume(self, name: str) -> bool:
        """Remove one of this node's volumes; False if it was not there. RuntimeFailure
        if the engine refuses (a container uses it)."""
        ...
