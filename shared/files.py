"""Secrets and configs: how a spec names them, and the bodies of their commands.

A task names a secret or config; the worker that runs it writes the value into a file and
mounts it into the container (secrets at /run/secrets/NAME by default, on tmpfs; configs
at the path the spec gives). Values are never in a spec, a label, an environment variable
or an image: see docs/secrets.md.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter, model_validator

from shared.sealing import OVERHEAD
from shared.wire import MAX_INT64, Attempt, Epoch, Name, TaskId, Text, Timestamp, WireModel

MAX_VALUE_BYTES = 500 * 1024
"""The largest secret or config value: Swarm's limit, which keeps the sealed value (base64)
far under a message's 1 MiB."""

MAX_REFS = 64
"""Secrets, and configs, one spec may name."""

SECRETS_DIR = "/run/secrets"

Version = Annotated[int, Field(ge=1, le=MAX_INT64)]


def no_dot_dot(path: str) -> str:
    """The path, refused if a part of it is `..` (it could lead out of where it is meant)."""
    if ".." in path.split("/"):
        raise ValueError("a target may not contain '..'")
    return path


# A path in the container: absolute, no `..`, no NUL; the file itself, never a directory.
Target = Annotated[
    str,
    Field(pattern=r"^/[^\x00]*[^/\x00]$", max_length=4096),
    AfterValidator(no_dot_dot),
]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")]


class FileKind(enum.StrEnum):
    """What a stored value is; the first word of its commands' routing keys."""

    SECRET = "secret"  # encrypted at rest, on tmpfs in the container, never shown
    CONFIG = "config"  # also encrypted at rest; mounted where the spec says


class SecretRef(WireModel):
    """A secret a task mounts: `{"name": "db-password"}` is /run/secrets/db-password."""

    name: Name
    target: FileName | Target | None = Field(
        default=None,
        description="a file name under /run/secrets, or an absolute path; default: the name",
    )
    version: Version | None = Field(
        default=None,
        description="set by the manager when the secret is updated (a rolling update);"
        " absent: the newest version",
    )

    def path(self) -> str:
        target = self.target or self.name
        return target if target.startswith("/") else f"{SECRETS_DIR}/{target}"


class ConfigRef(WireModel):
    """A config a task mounts at `target`, an absolute path in the container."""

    name: Name
    target: Target
    version: Version | None = Field(
        default=None, description="set by the manager when the config is updated"
    )

    def path(self) -> str:
        return self.target


class FileWrite(WireModel):
    """The body of `secret.create`/`update` and `config.create`/`update`: the value
    sealed for the manager's key (shared/sealing.py), base64, never in the clear."""

    name: Name
    sealed: Annotated[str, Field(max_length=(MAX_VALUE_BYTES + OVERHEAD) * 4 // 3 + 4)]

    @model_validator(mode="after")
    def _base64(self) -> FileWrite:
        self.value()
        return self

    def value(self) -> bytes:
        try:
            return base64.b64decode(self.sealed, validate=True)
        except binascii.Error as exc:
            raise ValueError("sealed: not base64") from exc


class FileNamed(WireModel):
    """The body of `secret.remove` and `config.remove`."""

    name: Name


class FileRecord(WireModel):
    """A secret or config as `kube secret ls --json` shows it: never its value."""

    kind: FileKind
    name: Name
    version: Version
    size: Annotated[int, Field(ge=0, le=MAX_VALUE_BYTES)]
    created_at: Timestamp = Field(description="when its first version was made")
    updated_at: Timestamp = Field(description="when its newest version was made")


class SealingKey(WireModel):
    """The result of `query.sealing-key`: where clients seal values for this manager."""

    public_key: Annotated[str, Field(description="X25519, 32 bytes, base64")]
    key_id: str


def context(kind: FileKind, name: str) -> bytes:
    """What a value sealed for the manager is bound to: its kind and name."""
    return f"kube {kind.value} {name}".encode()


# -- delivery to the worker that runs the task (docs/secrets.md#delivery) ---------------

PublicKey = Annotated[str, Field(min_length=44, max_length=44, description="X25519, base64")]
MAX_SEALED_FILES = 960 * 1024
"""A reply's sealed values, base64: what fits in a message (a spec's values together)."""


class FilesRequest(WireModel):
    """Worker to manager (`result.files.<node>`): send the secrets and configs of this
    attempt, sealed for this key, which the worker made for it and forgets after."""

    kind: Literal["files"] = "files"
    node: Name
    at: Timestamp
    task_id: TaskId
    attempt: Attempt
    public_key: PublicKey


class FilesReply(WireModel):
    """Manager to worker, on its node queue, not persistent and with a time to live: the
    values of the attempt's secrets and configs, sealed for the request's key (the JSON of
    FileValues), or why there are none."""

    kind: Literal["files"] = "files"
    epoch: Epoch = 0
    task_id: TaskId
    attempt: Attempt
    sealed: Annotated[str, Field(max_length=MAX_SEALED_FILES)] | None = None
    error: Text | None = None


class FileValue(WireModel):
    """One value inside a FilesReply's sealed box."""

    kind: FileKind
    name: Name
    version: Version
    value: str = Field(description="base64")


class FileValues(WireModel):
    values: tuple[FileValue, ...]


VALUES = TypeAdapter(FileValues)


def files_context(task_id: str, attempt: int) -> bytes:
    """What a FilesReply's box is bound to: the attempt it is for."""
    return f"kube files {task_id} {attempt}".encode()
