"""A command run on a pseudo-terminal of its own, typed into and read as a person would:
`kube exec -it` in the tests and in bench/exec_latency.py."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import termios
import time
from collections.abc import Mapping, Sequence


class PtyCommand:
    """A child process whose controlling terminal is a new pty; this side holds its master."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], size: tuple[int, int] = (24, 80)
    ) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its stdin, stdout, stderr and terminal
            try:
                os.execvpe(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd
        self.output = bytearray()
        self.returncode: int | None = None
        termios.tcsetwinsize(fd, size)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, wanted: bytes, timeout: float = 20.0, start: int = 0) -> int:
        """Read until `wanted` appears in the output after offset `start`; its end offset.
        TimeoutError (with what was read) if it does not in time."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(wanted, start)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                ended = "" if left <= 0 else f" (it ended: {self.wait(5)})"
                raise TimeoutError(
                    f"no {wanted!r} in {bytes(self.output[start:])[-2000:]!r}{ended}"
                )
        return found + len(wanted)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True  # nothing yet: the caller checks its deadline
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal (it exited)
            return False
        self.output += data
        return bool(data)

    def is_raw(self) -> bool:
        """Whether the child made its terminal raw: no echo, no line editing."""
        return not termios.tcgetattr(self.fd)[3] & (termios.ECHO | termios.ICANON)

    def wait_raw(self, timeout: float = 20.0) -> None:
        """Until the child made its terminal raw (reading its output meanwhile)."""
        deadline = time.monotonic() + timeout
        while not self.is_raw():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the terminal is not raw: {bytes(self.output)[-2000:]!r}")
            self._read(0.02)

    def resize(self, rows: int, cols: int) -> None:
        """A window change: the kernel tells the child's foreground group (SIGWINCH)."""
        termios.tcsetwinsize(self.fd, (rows, cols))

    def wait(self, timeout: float = 20.0) -> int:
        """The child's exit status (as a shell's $?), reading its output meanwhile."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self.returncode < 0:
                    self.returncode = 128 - self.returncode
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"still running: {bytes(self.output)[-2000:]!r}")
            self._read(0.05)
        return self.returncode

    def close(self) -> None:
        """Kill the child if it still runs; close the terminal."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGKILL
        with contextlib.suppress(OSError):
            os.close(self.fd)
