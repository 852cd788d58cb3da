"""Wire messages of streaming sessions (`kube logs -f`, and `kube exec` on the same transport).

A session joins a client to one attempt's container, through the manager, over AMQP only:

    client --query.stream.open-->  manager --StreamStart (node queue)-->  worker
    client <--StreamFrame (reply queue)-- manager <--StreamFrame (result.stream.<node>)-- worker
    client --query.stream.input--> manager --StreamInput (node queue)-->  worker

Output travels as numbered frames; the client acknowledges the frames it has (`ack`) and
so gives the worker credit for `window` more (docs/wire-contract.md#streaming-sessions).
Every input renews the session's lease; a session nobody renews ends by itself on the
worker and on the manager, so nothing outlives a client that was killed.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from shared.wire import Attempt, Epoch, Name, TaskId, Text, Timestamp, WireModel

SessionId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
"""A fresh random id the manager gives a session; knowing it is the right to use it."""

Seq = Annotated[int, Field(ge=0, le=2**53)]

MAX_FRAME_DATA = 256 * 1024
"""Characters of output one frame carries at most (its chunks together)."""

MAX_INPUT_DATA = 64 * 1024
"""Characters of stdin one input carries at most."""

INPUT_WINDOW = 256 * 1024
"""Bytes of stdin a client keeps in flight at most: sent, and not yet taken by the
command (a frame's `input_ack` says how much it took), so a fast producer is paced."""

INPUT_BUFFER_MAX = 4 * 1024 * 1024
"""Bytes of stdin a worker holds for a command that has not taken them; a client that
sends more (one that ignores `input_ack`) has its session ended (`failed`)."""

DEFAULT_LEASE = 15.0
"""Seconds a session lives without hearing from its client (the worker counts too)."""

DEFAULT_WINDOW = 32
"""Frames a worker may send beyond the last one its client acknowledged."""


class SessionKind(enum.StrEnum):
    """What a session streams."""

    LOGS = "logs"  # a container's output, as `docker logs` gives it
    EXEC = "exec"  # a command run in the container (kube exec), with stdin


class Fd(enum.IntEnum):
    """Which stream a chunk of output came from (or, on input, goes to)."""

    STDIN = 0
    STDOUT = 1
    STDERR = 2


class EndReason(enum.StrEnum):
    """Why a session ended; rendered to a sentence by the client."""

    EXITED = "exited"  # the container (or exec'd command) ended: all its output was sent
    DONE = "done"  # not following: all the output asked for was sent
    CLOSED = "closed"  # the client closed it
    EXPIRED = "expired"  # nobody renewed its lease
    NOT_FOUND = "not_found"  # the worker holds no container for that attempt
    NOT_ALLOWED = "not_allowed"  # exec: the worker's policy refuses it (--allow-exec)
    FAILED = "failed"  # the engine failed to read or run it (`error` says how)
    NODE_DOWN = "node_down"  # the manager: the node stopped sending heartbeats
    NO_ANSWER = "no_answer"  # the manager: the worker did not start the stream in time
    LOST = "lost"  # the manager or the worker does not know it (restarted): open it again


class Encoding(enum.StrEnum):
    """How a piece of data is written in a message's text."""

    UTF8 = "utf-8"  # the bytes are UTF-8: the text is them
    BASE64 = "base64"  # any bytes, in base64 (RFC 4648, with padding)


def packed(data: bytes, exact: bool = True) -> tuple[str, Encoding]:
    """Bytes as a message carries them: as text when they are UTF-8, in base64 otherwise
    (exact), or with the bytes that are not UTF-8 replaced (for a client that reads text
    only: one that opened the session without `binary`)."""
    try:
        return data.decode("utf-8"), Encoding.UTF8
    except UnicodeDecodeError:
        if exact:
            return base64.b64encode(data).decode("ascii"), Encoding.BASE64
        return data.decode("utf-8", errors="replace"), Encoding.UTF8


def unpacked(text: str, encoding: Encoding) -> bytes:
    """The bytes a message's text carries; ValueError when base64 that is not."""
    if encoding == Encoding.UTF8:
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data is not base64: {exc}") from None


def _utf8(encoding: Encoding) -> bool:
    return encoding == Encoding.UTF8


class Chunk(WireModel):
    """A piece of output: one line of a log (with its time), or bytes of an exec."""

    fd: Fd
    at: Timestamp | None = Field(default=None, description="when the engine logged it")
    data: str = Field(
        max_length=MAX_FRAME_DATA,
        description="the bytes as UTF-8 text, or in base64 when `encoding` says so",
    )
    encoding: Encoding = Field(
        default=Encoding.UTF8,
        exclude_if=_utf8,  # left out when utf-8: a client that reads text only decodes it
        description="base64 (only to a client that opened the session with `binary`)"
        " when the bytes are not UTF-8",
    )

    @model_validator(mode="after")
    def _decodes(self) -> Chunk:
        unpacked(self.data, self.encoding)  # base64 that is not: refused on decoding
        return self

    def raw(self) -> bytes:
        """The bytes the engine gave."""
        return unpacked(self.data, self.encoding)


class StreamEnd(WireModel):
    """The last word of a session."""

    reason: EndReason
    node: Name | None = None
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31)
    error: Text | None = None


class LogsParams(WireModel):
    """What a logs session reads: as `docker logs` does."""

    follow: bool = True
    since: Timestamp | None = Field(default=None, description="only output logged after it")
    tail: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    stdout: bool = True
    stderr: bool = True


class ExecParams(WireModel):
    """What an exec session runs (kube exec): reserved for it, defined with the transport."""

    command: Annotated[
        list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=256)
    ]
    stdin: bool = False
    tty: bool = False
    rows: Annotated[int, Field(ge=1, le=10_000)] | None = None
    cols: Annotated[int, Field(ge=1, le=10_000)] | None = None


Binary = Annotated[
    bool,
    Field(
        description="the client reads chunks in base64 (`encoding`) and paces its stdin by"
        " `input_ack`: bytes are carried exactly; without it (older clients), output is"
        " text with bytes that are not UTF-8 replaced, and input is not paced"
    ),
]
"""Whether a session carries bytes exactly: asked for on open, passed on in the start."""


class SessionOpen(WireModel):
    """Body of `query.stream.open`, from a client: stream from a task's container.

    The reply (a `Reply`, to the request's reply_to) has `result` = {"session", "node",
    "task_id", "attempt"}; the frames then come to the same reply_to."""

    kind: SessionKind = SessionKind.LOGS
    id: TaskId = Field(description="the task (its id or name)")
    attempt: Attempt | None = Field(default=None, description="its current one if not given")
    logs: LogsParams | None = None
    exec: ExecParams | None = None
    lease: Annotated[float, Field(ge=2, le=300)] = DEFAULT_LEASE
    window: Annotated[int, Field(ge=1, le=1024)] = DEFAULT_WINDOW
    binary: Binary = False


class Resize(WireModel):
    rows: Annotated[int, Field(ge=1, le=10_000)]
    cols: Annotated[int, Field(ge=1, le=10_000)]


class StreamInput(WireModel):
    """Client to manager (`query.stream.input`), and manager to worker (its node queue):
    everything a client says to a running session. Any input renews the lease.

    `ack`: the highest frame seq the client holds (credit for `window` more). `stdin`,
    `eof`, `resize`, `signal`: for exec; a logs session ignores them. `close`: end it.
    `stdin` is text, or base64 when `encoding` says so (any bytes)."""

    kind: Literal["stream-input"] = "stream-input"
    epoch: Epoch = 0
    session: SessionId
    ack: Seq | None = None
    stdin: str | None = Field(default=None, max_length=MAX_INPUT_DATA)
    encoding: Encoding = Field(default=Encoding.UTF8, description="of `stdin`")
    eof: bool = False
    resize: Resize | None = None
    signal: Annotated[str, Field(pattern=r"^(SIG)?[A-Z0-9]{1,12}$")] | None = None
    close: bool = False

    @model_validator(mode="after")
    def _decodes(self) -> StreamInput:
        unpacked(self.stdin or "", self.encoding)  # base64 that is not: refused on decoding
        return self

    def stdin_bytes(self) -> bytes:
        """The bytes of stdin it carries."""
        return unpacked(self.stdin or "", self.encoding)


class StreamStart(WireModel):
    """Manager to worker, on the node's queue: start a session on an attempt's container.

    Published with `lease` as its AMQP expiration: a start that waited longer is dropped
    by the broker (its client gave up)."""

    kind: Literal["stream-start"] = "stream-start"
    epoch: Epoch = 0
    session: SessionId
    task_id: TaskId
    attempt: Attempt
    logs: LogsParams | None = None
    exec: ExecParams | None = None
    lease: Annotated[float, Field(ge=2, le=300)] = DEFAULT_LEASE
    window: Annotated[int, Field(ge=1, le=1024)] = DEFAULT_WINDOW
    binary: Binary = False


class StreamFrame(WireModel):
    """Worker to manager (`result.stream.<node>` on kube.results), relayed as is to the
    client; the manager also sends the client one, with only `end`, when it ends a session.

    `seq` counts from 1 in each session; frame 1 comes at once, even empty, to say the
    stream started. An exec session's frames carry `input_ack`; a frame may come with
    nothing but a new `input_ack`."""

    kind: Literal["stream"] = "stream"
    node: Name
    at: Timestamp
    session: SessionId
    seq: Seq
    chunks: Annotated[list[Chunk], Field(max_length=4096)] = Field(default_factory=list)
    end: StreamEnd | None = None
    input_ack: Annotated[int, Field(ge=0, le=2**53)] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # a client that reads text only: absent
        description="exec, to a client that opened it with `binary`: bytes of stdin the"
        " command has taken so far",
    )
