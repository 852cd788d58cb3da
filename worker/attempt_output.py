"""The end of an ended attempt's output, read before its container is removed and sent
to the manager to keep (manager/kept_output.py), so that `kube logs` still shows how the
attempt ended once the container, or the whole node, is gone.

Read at two moments, each in an engine thread and never on the path of the attempt's
own update (that is published first, and apart): when the container exits by itself
(the update carries its exit code), and once a container the worker removes has
stopped, just before its removal, if its output was not read yet (a stop, a failed health
check, an older attempt removed before the next one starts). The same attempt may be
read twice (an exit and its removal racing): the manager keeps the newest read and the
exit code once known.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from shared.errors import RuntimeFailure
from shared.messages import KEPT_OUTPUT_BYTES, KeptOutput

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (task id, attempt)
Read = Callable[[str, int, int], tuple[bytes, bytes]]  # Runtime.output_end


def kept_output(
    node: str, key: Key, exit_code: int | None, stdout: bytes, stderr: bytes
) -> KeptOutput:
    """The message for the last KEPT_OUTPUT_BYTES of each stream."""
    return KeptOutput(
        node=node,
        at=datetime.now(UTC),
        task_id=key[0],
        attempt=key[1],
        exit_code=exit_code,
        stdout=_text(stdout),
        stderr=_text(stderr),
        cut=max(len(stdout), len(stderr)) > KEPT_OUTPUT_BYTES,
    )


def _text(data: bytes) -> str:
    """The end of a stream, decoded as UTF-8 (bad bytes replaced; NUL too, which
    PostgreSQL's text cannot hold)."""
    text = data[-KEPT_OUTPUT_BYTES:].decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")[-KEPT_OUTPUT_BYTES:]


class OutputKeeper:
    """Reads ended attempts' output and hands it to `send`; remembers which attempts it
    has read, until their containers are removed (`removed`). Thread-safe."""

    def __init__(self, node: str, read: Read, send: Callable[[KeptOutput], None]) -> None:
        self.node = node
        self._read = read
        self._send = send
        self._lock = threading.Lock()
        self._read_already: set[Key] = set()

    def exited(self, key: Key, exit_code: int) -> None:
        """In an engine thread: the attempt's container exited by itself; read it."""
        if self._keep(key, exit_code):
            with self._lock:
                self._read_already.add(key)

    def removing(self, key: Key) -> None:
        """In an engine thread, once the container has stopped and before it is removed:
        read it unless its exit was read already."""
        with self._lock:
            if key in self._read_already:
                return
        self._keep(key, None)

    def removed(self, key: Key) -> None:
        """The container is gone: nothing more to read of it."""
        with self._lock:
            self._read_already.discard(key)

    def _keep(self, key: Key, exit_code: int | None) -> bool:
        try:
            stdout, stderr = self._read(key[0], key[1], KEPT_OUTPUT_BYTES + 1)
        except RuntimeFailure as exc:  # gone already (removed by its removal, or by hand)
            log.info("task %s: output of attempt %d not kept: %s", key[0], key[1], exc)
            return False
        except Exception:  # never in the way of the removal or the update
            log.exception("task %s: reading the output of attempt %d failed", *key)
            return False
        self._send(kept_output(self.node, key, exit_code, stdout, stderr))
        return True
