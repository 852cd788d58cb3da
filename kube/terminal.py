"""The local terminal of `kube exec -it`: raw while the session lasts, restored on every way out.

In raw mode the terminal hands every keystroke over at once and unechoed (the remote pty
echoes), Ctrl-C included, as the byte 0x03: the remote terminal turns it into SIGINT for
the command there, not for kube. What restores the terminal:

- leaving the `with` block, normally or by any exception;
- SIGTERM and SIGHUP, which become `TerminalClosed` (raised in the main thread), so the
  block is left and the saved settings are put back before kube exits;
- SIGKILL cannot be caught: `stty sane` (or `reset`) repairs the terminal then.

A window change (SIGWINCH) calls `on_resize` with the new size, in the main thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

DEFAULT_SIZE = (24, 80)


class TerminalClosed(Exception):  # noqa: N818 - a way out, as KeyboardInterrupt is
    """kube was told to stop (SIGTERM, SIGHUP) while it held the terminal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on fd, or 24x80 when it is no terminal or says 0."""
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return DEFAULT_SIZE
    rows, cols = struct.unpack("HHHH", packed)[:2]
    return (rows, cols) if rows and cols else DEFAULT_SIZE


def is_terminal(fd: int) -> bool:
    return os.isatty(fd)


@contextlib.contextmanager
def raw(fd: int, on_resize: Callable[[int, int], None] | None = None) -> Iterator[None]:
    """The terminal on fd in raw mode for the block; its settings and kube's signal
    handlers are restored however the block ends (see the module)."""
    saved = termios.tcgetattr(fd)
    handlers: dict[signal.Signals, Any] = {}

    def closed(signum: int, _frame: FrameType | None) -> None:
        raise TerminalClosed(signum)

    def resized(_signum: int, _frame: FrameType | None) -> None:
        if on_resize is not None:
            on_resize(*window_size(fd))

    try:
        wanted = {signal.SIGTERM: closed, signal.SIGHUP: closed, signal.SIGWINCH: resized}
        for signum, handler in wanted.items():
            handlers[signum] = signal.signal(signum, handler)
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        # TCSADRAIN: what the remote side printed last reaches the screen in raw mode
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for signum, previous in handlers.items():
            signal.signal(signum, previous)
