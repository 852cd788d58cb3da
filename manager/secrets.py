"""Secrets and configs on the manager: what a write stores, who uses a name, and the
rolling update an update starts. Pure functions; manager/commands.py does the I/O.

A value arrives sealed for the manager's transport key and is stored encrypted under its
store key (manager/secret_key.py); it is never logged, never put in a reply, an event or
an error. An update pins the new version in the spec of every service that names it, as
`kube update` would: the service rolls one task at a time (manager/services.py).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from datetime import datetime

from manager.secret_key import SecretKey
from manager.store.files import StoredFile
from shared.codec import encode
from shared.errors import SecretError
from shared.files import (
    MAX_VALUE_BYTES,
    FileKind,
    FilesReply,
    FilesRequest,
    FileValue,
    FileValues,
    files_context,
)
from shared.models import ServiceRecord, TaskRecord
from shared.sealing import seal
from shared.specs import TaskSpec

NO_KEY = (
    "this manager has no secrets key, so secret and config commands are off: start it with"
    " --secrets-key-file FILE or KUBE_SECRETS_KEY_FILE (docs/secrets.md)"
)


def refs(spec: TaskSpec, kind: FileKind) -> tuple[str, ...]:
    """The names of a kind a spec mounts."""
    return tuple(ref.name for ref in (spec.secrets if kind is FileKind.SECRET else spec.configs))


def value_refusal(kind: FileKind, name: str, value: bytes) -> str | None:
    """Why a value may not be stored (its size only: never anything of the value)."""
    if not value:
        return f"{kind.value} {name}: the value is empty"
    if len(value) > MAX_VALUE_BYTES:
        return f"{kind.value} {name}: the value is {len(value)} bytes, over {MAX_VALUE_BYTES}"
    return None


def stored(
    key: SecretKey, kind: FileKind, name: str, version: int, value: bytes, now: datetime
) -> StoredFile:
    """The row of a new version: the value encrypted, bound to (kind, name, version)."""
    return StoredFile(
        kind=kind,
        name=name,
        version=version,
        created_at=now,
        size=len(value),
        digest=key.digest(value),
        key_id=key.key_id,
        sealed=key.encrypt(kind.value, name, version, value),
    )


def users(
    kind: FileKind, name: str, services: Iterable[ServiceRecord], tasks: Iterable[TaskRecord]
) -> list[str]:
    """What mounts the name: running services, and tasks not ended outside them."""
    found = [
        f"service {s.name}"
        for s in services
        if s.desired_state == "running" and name in refs(s.spec, kind)
    ]
    named = {s.split(" ", 1)[1] for s in found}
    found += [
        f"task {t.id}"
        for t in tasks
        if not t.state.terminal and t.name not in named and name in refs(t.spec, kind)
    ]
    return found


def pinned(spec: TaskSpec, kind: FileKind, name: str, version: int) -> TaskSpec | None:
    """The spec with its mount of `name` at `version`; None if it mounts no such name."""
    field = "secrets" if kind is FileKind.SECRET else "configs"
    mounted = getattr(spec, field)
    if not any(ref.name == name for ref in mounted):
        return None
    moved = tuple(
        ref.model_copy(update={"version": version}) if ref.name == name else ref for ref in mounted
    )
    return spec.model_copy(update={field: moved})


def rolls(
    services: Iterable[ServiceRecord], kind: FileKind, name: str, version: int
) -> list[tuple[ServiceRecord, TaskSpec]]:
    """Each running service that mounts `name`, with its spec at the new version."""
    found = []
    for service in services:
        if service.desired_state != "running":
            continue
        spec = pinned(service.spec, kind, name, version)
        if spec is not None:
            found.append((service, spec))
    return found


Stored = Callable[[FileKind, str, int | None], StoredFile | None]
"""Finds a stored version (the newest when none is named): Store.file."""

FILES_TTL = 30.0
"""Seconds a FilesReply may wait in the node's queue before the broker drops it: the
worker waits less (worker/files.py), then fails the attempt, which restarts."""


def files_reply(
    key: SecretKey | None,
    task: TaskRecord | None,
    request: FilesRequest,
    stored: Stored,
) -> FilesReply:
    """The values of an attempt's secrets and configs, sealed for the worker's key; or why
    not, naming the secret (never its value). Only for the node that holds the attempt."""

    def refused(error: str) -> FilesReply:
        return FilesReply(task_id=request.task_id, attempt=request.attempt, error=error)

    if task is None or task.node != request.node or task.attempt != request.attempt:
        attempt = f"attempt {request.attempt} of {request.task_id}"
        return refused(f"{attempt} is not {request.node}'s to run")
    if key is None:
        return refused(NO_KEY)
    values = []
    for kind, mounted in (
        (FileKind.SECRET, task.spec.secrets),
        (FileKind.CONFIG, task.spec.configs),
    ):
        for ref in mounted:
            row = stored(kind, ref.name, ref.version)
            if row is None:
                version = f" version {ref.version}" if ref.version else ""
                return refused(f"no such {kind.value}: {ref.name}{version}")
            try:
                value = key.decrypt(kind.value, row.name, row.version, row.key_id, row.sealed)
            except SecretError as exc:
                return refused(str(exc))
            encoded = base64.b64encode(value).decode()
            values.append(FileValue(kind=kind, name=row.name, version=row.version, value=encoded))
    box = seal(
        base64.b64decode(request.public_key),
        encode(FileValues(values=tuple(values))),
        files_context(request.task_id, request.attempt),
    )
    return FilesReply(
        task_id=request.task_id, attempt=request.attempt, sealed=base64.b64encode(box).decode()
    )
