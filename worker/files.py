"""An attempt's secrets and configs on its worker: asked of the manager, written to a
tmpfs, mounted read-only into the container, removed when the attempt ends.

The worker asks with a key it makes for the attempt (`FilesRequest`); the manager answers
on the node's queue with the values sealed for that key (`FilesReply`, shared/sealing.py),
so what the broker holds, or dead-letters, is ciphertext no one can open once the worker
has forgotten the key. Secrets are written only on a tmpfs (never on a disk that outlives
the attempt), files mode 0400 in a folder mode 0700; configs mode 0444.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from shared.codec import decode
from shared.errors import DecodeError, SecretError
from shared.files import (
    VALUES,
    ConfigRef,
    FileKind,
    FilesReply,
    FilesRequest,
    FileValues,
    SecretRef,
    files_context,
)
from shared.sealing import public_bytes, unseal
from shared.specs import TaskSpec

log = logging.getLogger(__name__)

Key = tuple[str, int]
WAIT_SECONDS = 20.0
"""How long a start waits for the manager's FilesReply (its time to live is 30 s): then
the attempt fails with that reason, and its restart policy decides."""
MODES = {FileKind.SECRET: 0o400, FileKind.CONFIG: 0o444}


@dataclass(frozen=True)
class FileMount:
    """A file the worker wrote, and where the container sees it (read-only)."""

    source: str
    target: str


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` lies on (/proc/self/mounts), "" if unknown."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    resolved = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def default_root() -> Path:
    """/run/kube when /run is a tmpfs (most hosts), else /dev/shm/kube."""
    return Path("/run/kube") if filesystem(Path("/run")) == "tmpfs" else Path("/dev/shm/kube")


class Files:
    """The files of this node's attempts, under `root/<node>/<task>.<attempt>/`."""

    def __init__(
        self, root: Path, node: str, ask: Callable[[FilesRequest], None], wait: float = WAIT_SECONDS
    ) -> None:
        self.node = node
        self.root = root / node
        self.ask = ask  # publishes a request (from any thread)
        self.wait = wait
        self._lock = threading.Lock()
        self._waiting: dict[Key, Future[FilesReply]] = {}
        self._mine: set[str] = set()  # folders this process wrote: it removes them itself

    def fetch(self, key: Key, spec: TaskSpec) -> tuple[FileMount, ...]:
        """In the pool: the attempt's files, written; SecretError saying why not."""
        if not spec.secrets and not spec.configs:
            return ()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if spec.secrets and (kind := filesystem(self.root)) != "tmpfs":
            raise SecretError(
                f"secrets are written only to a tmpfs, and {self.root} is on {kind or 'an'}"
                " unknown filesystem: give the worker --files-dir on a tmpfs"
            )
        private = X25519PrivateKey.generate()
        future: Future[FilesReply] = Future()
        with self._lock:
            self._waiting[key] = future
        try:
            self.ask(
                FilesRequest(
                    node=self.node,
                    at=datetime.now(UTC),
                    task_id=key[0],
                    attempt=key[1],
                    public_key=base64.b64encode(public_bytes(private)).decode(),
                )
            )
            reply = future.result(timeout=self.wait)
        except FutureTimeout as exc:
            raise SecretError(
                f"the manager did not send the secrets and configs within {self.wait:g} s"
            ) from exc
        finally:
            with self._lock:
                self._waiting.pop(key, None)
        if reply.error is not None or reply.sealed is None:
            raise SecretError(reply.error or "the manager sent no values")
        try:
            opened = unseal(private, base64.b64decode(reply.sealed), files_context(*key))
            values = decode(VALUES, opened)
        except DecodeError as exc:
            raise SecretError(f"the manager's values do not read: {exc.reason}") from exc
        return self._write(key, spec, values)

    def answered(self, reply: FilesReply) -> None:
        """On the bus thread: hand a reply to the start waiting for it (if any still is)."""
        with self._lock:
            future = self._waiting.get((reply.task_id, reply.attempt))
        if future is None:
            key = (reply.task_id, reply.attempt)
            log.info("task %s: attempt %d: files came after its start gave up", *key)
        elif not future.done():
            future.set_result(reply)

    def folder(self, key: Key) -> Path:
        return self.root / f"{key[0]}.{key[1]}"

    def _write(self, key: Key, spec: TaskSpec, values: FileValues) -> tuple[FileMount, ...]:
        folder = self.folder(key)
        with self._lock:
            self._mine.add(folder.name)
        folder.mkdir(exist_ok=True, mode=0o700)
        given = {(v.kind, v.name): v for v in values.values}
        mounts = []
        refs: list[tuple[FileKind, SecretRef | ConfigRef]] = [
            *((FileKind.SECRET, ref) for ref in spec.secrets),
            *((FileKind.CONFIG, ref) for ref in spec.configs),
        ]
        for index, (kind, ref) in enumerate(refs):
            value = given.get((kind, ref.name))
            if value is None:
                raise SecretError(f"the manager sent no value for {kind.value} {ref.name}")
            path = folder / f"{kind.value}-{index}-{ref.name}"
            path.unlink(missing_ok=True)  # a start again: written anew
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODES[kind])
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64decode(value.value))
            mounts.append(FileMount(str(path), ref.path()))
        return tuple(mounts)

    def remove(self, key: Key) -> None:
        """The attempt ended: its files go (nothing to do for one that had none)."""
        with self._lock:
            self._mine.discard(self.folder(key).name)
        try:
            shutil.rmtree(self.folder(key))
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("task %s: attempt %d: could not remove its files: %s", *key, exc)

    def sweep(self, running: Collection[Key]) -> None:
        """Remove what a previous worker process left: the files of attempts not running
        here (their exit came while no worker watched). This process's own are removed
        with their attempts, and one may be between its files and its container."""
        try:
            folders = list(self.root.iterdir())
        except FileNotFoundError:
            return
        with self._lock:
            kept = {f"{task}.{attempt}" for task, attempt in running} | self._mine
        for folder in folders:
            if folder.name not in kept:
                log.info("worker %s: removing the files of %s: it ended", self.node, folder.name)
                shutil.rmtree(folder, ignore_errors=True)
