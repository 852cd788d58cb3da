"""Where `kube up` writes its lines and its children's, and what it does when nobody reads.

A reader can go away while `kube up` runs: `kube up | head -1` closes the pipe (EPIPE),
a closed terminal fails every write (EIO). Either way `kube up` must not die in the
middle of a print with its children left running, nor stop draining their output (a
child blocked on a full pipe never stops). The first failed write marks the sink gone
and calls `on_gone`, which stops the cluster; later lines are dropped, since nothing
can show them.
"""

from __future__ import annotations

import enum
import errno
import os
import sys
import threading
from collections.abc import Callable
from typing import IO


class Gone(enum.StrEnum):
    """Why the output cannot be written any more."""

    PIPE_CLOSED = "pipe-closed"  # the reading end of a pipe was closed (`| head`)
    TERMINAL_CLOSED = "terminal-closed"  # the terminal hung up (EIO)
    OTHER = "other"  # any other failed write


class Sink:
    """Line output shared by threads; the first failed write marks it gone, once."""

    def __init__(self, out: IO[str], on_gone: Callable[[Gone], None] = lambda _: None) -> None:
        self.out = out
        self.on_gone = on_gone
        self.gone: Gone | None = None
        self.error: OSError | None = None  # the failed write's error, to say it elsewhere
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """Write one line and flush it, unless the reader has gone."""
        with self._lock:
            if self.gone is not None:
                return
            try:
                print(text, file=self.out, flush=True)
            except OSError as exc:
                self.gone = _why(exc)
                self.error = exc
                self._detach()
            else:
                return
        self.on_gone(self.gone)

    def _detach(self) -> None:
        """Point our stdout at /dev/null, so that the flush at exit raises nothing more
        (Python would print "Exception ignored ... BrokenPipeError" on stderr)."""
        if self.out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _why(exc: OSError) -> Gone:
    if isinstance(exc, BrokenPipeError):
        return Gone.PIPE_CLOSED
    if exc.errno in (errno.EIO, errno.ENXIO):
        return Gone.TERMINAL_CLOSED
    return Gone.OTHER
