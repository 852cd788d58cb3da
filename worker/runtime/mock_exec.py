"""`kube exec` on the mock runtime: a command that echoes its input, as `cat` would.

Every byte written comes back on stdout (with tty, as a terminal's echo would); the end
of the input ends the command with the container's MOCK_EXEC_EXIT_CODE (default 0), and
close() kills it (exit 137, as SIGKILL).
"""

from __future__ import annotations

import queue
import signal

from shared.errors import RuntimeFailure
from worker.runtime.base import ExecOptions, OutputFd

KILLED_EXIT_CODE = 137  # 128 + SIGKILL


class MockExecSession:
    """An echoing command; thread-safe as the ExecSession protocol asks."""

    def __init__(self, options: ExecOptions, exit_code: int) -> None:
        self.options = options
        self.size = (options.rows, options.cols)
        self._exit_code = exit_code
        self._ended: int | None = None
        self._output: queue.Queue[bytes | None] = queue.Queue()
        if not options.stdin:
            self._end(exit_code)

    def read(self) -> tuple[OutputFd, bytes] | None:
        """The next chunk echoed, or None once the command ended."""
        data = self._output.get()
        if data is None:
            self._output.put(None)  # every later read sees the end too
            return None
        return OutputFd.STDOUT, data

    def write(self, data: bytes) -> None:
        if self._ended is None:
            self._output.put(data)

    def close_input(self) -> None:
        self._end(self._exit_code)

    def resize(self, rows: int, cols: int) -> None:
        self.size = (rows, cols)

    def signal(self, name: str) -> None:
        """Any signal ends the echo, as its default action would (128 + its number)."""
        try:
            number = signal.Signals[f"SIG{name}"].value
        except KeyError:
            raise RuntimeFailure(f"mock: no signal {name}") from None
        self._end(128 + number)

    def exit_code(self) -> int | None:
        return self._ended

    def close(self) -> None:
        self._end(KILLED_EXIT_CODE)

    def _end(self, code: int) -> None:
        if self._ended is None:
            self._ended = code
            self._output.put(None)
