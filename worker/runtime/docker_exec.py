"""`kube exec` on a Docker engine: a command started in a container and attached to.

The engine's exec API has no way to end an exec (moby #9098): a command whose caller went
away keeps running. So close() kills it itself: the exec's process id (the host's) and
its descendants are found in the host's /proc, mapped to the container's process ids
(`NSpid`), and killed by a second exec of `kill -KILL` in the container, which works
whichever user the worker runs as. The worker must see the host's /proc (run it on the
host, as docs/security.md says for mounts); where it cannot, the command is left to end
on its own and a warning says so.
"""

from __future__ import annotations

import contextlib
import io as io_module
import logging
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from shared.errors import RuntimeFailure
from worker.runtime.base import ExecOptions, OutputFd

log = logging.getLogger(__name__)

_PROC = Path("/proc")
_READ_SIZE = 65536
_PID_WAIT = 2.0  # seconds a just-started exec may take to have a process id


class DockerExecSession:
    """One exec in one container, attached through the engine's hijacked connection."""

    def __init__(self, api: Any, container_id: str, name: str, options: ExecOptions) -> None:
        self._api = api
        self._name = name
        self._tty = options.tty
        self._container_id = container_id
        self._lock = threading.Lock()
        self._closed = False
        try:
            created = api.exec_create(
                container_id,
                list(options.command),
                stdin=options.stdin,
                tty=options.tty,
                stdout=True,
                stderr=True,
            )
            self.exec_id: str = created["Id"]
            # socket=True: the raw connection, both ways; with tty, output is not framed.
            self._io = api.exec_start(self.exec_id, tty=options.tty, socket=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise RuntimeFailure(f"exec in {name}: {exc}") from exc
        self._sock: socket.socket = self._io._sock
        self._reader = _buffered(self._io)
        if options.tty:
            self.resize(options.rows, options.cols)

    def read(self) -> tuple[OutputFd, bytes] | None:
        """The next chunk of output, or None once the command closed its output.

        Without a tty the engine frames each chunk: 8 bytes (stream, 0, 0, 0, size as a
        big-endian uint32), then the data."""
        try:
            if self._tty:
                data = self._reader.read1(_READ_SIZE)
                return (OutputFd.STDOUT, data) if data else None
            header = self._reader.read(8)
            if len(header) < 8:
                return None
            stream, size = struct.unpack(">BxxxL", header)
            data = self._reader.read(size)
        except (OSError, ValueError):
            return None  # closed by close() from another thread
        if len(data) < size:
            return None
        return (OutputFd.STDERR if stream == 2 else OutputFd.STDOUT), data

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin."""
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise RuntimeFailure(f"exec in {self._name}: its input is closed ({exc})") from exc

    def close_input(self) -> None:
        """End of file on the command's stdin: the engine reads a half-close as such."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's window size (tty only)."""
        if not self._tty:
            return
        try:
            self._api.exec_resize(self.exec_id, height=rows, width=cols)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            # The exec may have ended meanwhile: a window size is no reason to fail.
            log.info("exec %s in %s: resize refused: %s", self.exec_id[:12], self._name, exc)

    def exit_code(self) -> int | None:
        """The command's exit code once it ended, None while it runs."""
        state = self._inspect()
        if state is None or state.get("Running"):
            return None
        code = state.get("ExitCode")
        return None if code is None else int(code)

    def signal(self, name: str) -> None:
        """Send the command (its first process only) the named signal, from inside."""
        state = self._running()
        if state is not None:
            self._kill(int(state["Pid"]), name, tree=False)

    def close(self) -> None:
        """Kill the command (and what it started) if it still runs; drop the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        state = self._running()
        if state is not None:
            self._kill(int(state["Pid"]), "KILL", tree=True)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._io.close()

    def _running(self) -> dict[str, Any] | None:
        """The exec's state while it runs with a process id; None once it ended."""
        state = self._inspect()
        deadline = time.monotonic() + _PID_WAIT
        # Just after exec_start the engine may say Running before it knows the Pid.
        while state is not None and state.get("Running") and not state.get("Pid"):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
            state = self._inspect()
        return state if state is not None and state.get("Running") else None

    def _inspect(self) -> dict[str, Any] | None:
        try:
            return dict(self._api.exec_inspect(self.exec_id))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("exec %s in %s: inspect failed: %s", self.exec_id[:12], self._name, exc)
            return None

    def _kill(self, host_pid: int, signal: str, tree: bool) -> None:
        """Signal the exec's process (and its tree) from inside the container (see the
        module)."""
        hosts = _tree(host_pid) if tree else [host_pid]
        pids = [p for p in (_container_pid(h) for h in hosts) if p is not None]
        if not pids:
            log.warning(
                "exec %s in %s: its process %d is not in this host's /proc; left to end on its own",
                self.exec_id[:12],
                self._name,
                host_pid,
            )
            return
        try:
            kill = self._api.exec_create(
                self._container_id,
                ["kill", f"-{signal}", *map(str, pids)],
                stdout=True,
                stderr=True,
            )
            said = self._api.exec_start(kill["Id"])
            code = self._api.exec_inspect(kill["Id"]).get("ExitCode")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("exec %s in %s: kill failed: %s", self.exec_id[:12], self._name, exc)
            return
        if code not in (0, None):  # one of them may have ended meanwhile: said, not fatal
            log.info("exec %s in %s: kill said %r", self.exec_id[:12], self._name, said)


def _buffered(io: Any) -> Any:
    """What to read the exec's output from: the buffered reader that parsed the engine's
    HTTP answer, which may already hold the first output (the docker SDK hands out the
    raw socket under it, and a shell's first prompt, read with the headers, was lost)."""
    response = getattr(io, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    return reader if hasattr(reader, "read1") else io_module.BufferedReader(io)


def _tree(root: int) -> list[int]:
    """The process and its descendants, parents first, from the host's /proc."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            # the command may hold spaces and parentheses: the fields follow the last ')'
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _container_pid(host_pid: int) -> int | None:
    """The id of a host process in its own (the container's) pid namespace, or None."""
    try:
        status = (_PROC / str(host_pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ids = line.split()[1:]
            return int(ids[-1]) if ids else None
    return None  # a kernel before 4.1: no NSpid line
