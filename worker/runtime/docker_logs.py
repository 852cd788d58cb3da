"""Following a container's output on a Docker engine, stdout and stderr told apart.

The SDK's `logs(stream=True)` strips the engine's framing and with it which stream a line
came from; this reads the engine's multiplexed stream itself: frames of an 8-byte header
(stream id, 3 zero bytes, big-endian length) and the payload. With `timestamps`, each log
entry starts with its RFC 3339 time (nanoseconds) and a space. A container with a TTY
has no framing: all of it is stdout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import docker.errors
from docker.types.daemon import CancellableStream

from shared.sessions import LogsParams
from worker.runtime.base import LogLine

HEADER = 8
TTY_READ = 64 * 1024


def parse_time(text: bytes) -> datetime | None:
    """The engine's RFC 3339 time with nanoseconds, cut to microseconds; None if not one."""
    try:
        raw = text.decode("ascii").rstrip("Z")
        whole, _, fraction = raw.partition(".")
        return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}").replace(tzinfo=UTC)
    except (UnicodeDecodeError, ValueError):
        return None


def split_time(entry: bytes) -> tuple[datetime | None, bytes]:
    """A timestamped log entry as (its time, the rest)."""
    stamp, space, rest = entry.partition(b" ")
    at = parse_time(stamp) if space else None
    return (at, rest) if at is not None else (None, entry)


class DockerLogFollow:
    """One `GET /containers/{id}/logs` response, read as LogLines until closed or ended."""

    def __init__(self, api: Any, container_id: str, tty: bool, params: dict[str, Any]) -> None:
        self._tty = tty
        self._closed = threading.Event()
        url = f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs"
        # The session's own get, not the SDK's: no read timeout (a quiet container is fine)
        self._response = api.get(url, params={**params, "timestamps": "1"}, stream=True)
        if self._response.status_code == 404:
            self._response.close()
            raise docker.errors.NotFound(f"no container {container_id}")
        self._response.raise_for_status()
        self._raw = self._response.raw

    def __iter__(self) -> Iterator[LogLine]:
        try:
            yield from (self._tty_lines() if self._tty else self._frames())
        except Exception:
            # close() cuts the socket under the read: http.client then fails in any of
            # several ways (OSError, ValueError, even AttributeError); only a read that
            # failed on its own is an error
            if not self._closed.is_set():
                raise

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = self._raw.read(size - len(data))
            if not more:
                return b""  # the engine ended the stream (the container stopped)
            data += more
        return data

    def _frames(self) -> Iterator[LogLine]:
        while not self._closed.is_set():
            header = self._read(HEADER)
            if len(header) < HEADER:
                return
            size = int.from_bytes(header[4:8], "big")
            payload = self._read(size)
            if len(payload) < size:
                return
            at, data = split_time(payload)
            yield LogLine(fd=2 if header[0] == 2 else 1, at=at, data=data)

    def _tty_lines(self) -> Iterator[LogLine]:
        while not self._closed.is_set():
            data = self._raw.read1(TTY_READ) if hasattr(self._raw, "read1") else b""
            if not data:
                return
            for line in data.splitlines(keepends=True):
                at, rest = split_time(line)
                yield LogLine(fd=1, at=at, data=rest)

    def close(self) -> None:
        """Cut the connection: a read blocked on it returns at once (from any thread)."""
        self._closed.set()
        with contextlib.suppress(OSError, AttributeError, docker.errors.DockerException):
            CancellableStream(iter(()), self._response).close()
        with contextlib.suppress(OSError):
            self._response.close()


def log_params(params: LogsParams) -> dict[str, Any]:
    """The query of the engine's logs request."""
    query: dict[str, Any] = {
        "follow": "1" if params.follow else "0",
        "stdout": "1" if params.stdout else "0",
        "stderr": "1" if params.stderr else "0",
        "tail": "all" if params.tail is None else str(params.tail),
    }
    if params.since is not None:
        query["since"] = f"{params.since.timestamp():.6f}"
    return query
