"""How the CLI waits for work it asked of the cluster, and shows it while it waits.

On a terminal the wait is one line with a spinner (rich), rewritten as things change.
Anywhere else (a pipe, a file, a CI log) it is a plain line on stderr each time the text
changes: no spinner, no control characters. Stdout is left to the command's result.

A wait ends when its look says done, when its timeout elapses (WaitTimeout), when no
manager answers any more (NoManagerError), or at Ctrl-C (WaitInterrupted): the work
carries on in the cluster either way, and the line the CLI prints says how to check or
stop it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.status import Status

from kube.arguments import seconds
from kube.client import Client, WaitTimeout


def waiting_flags(parser: argparse.ArgumentParser, until: str, timeout: float) -> None:
    """-d/--detach and --wait-timeout, for a command that waits `until` something."""
    parser.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help=f"return once the cluster took the request, instead of waiting {until}",
    )
    parser.add_argument(
        "--wait-timeout",
        type=seconds,
        default=timeout,
        metavar="SECONDS",
        help=f"give up waiting after this long (default {timeout:g}); the work carries on",
    )


class Progress:
    """The display of one wait: a spinner line on a terminal, plain lines elsewhere."""

    def __init__(self, out: IO[str] | None = None, terminal: bool | None = None) -> None:
        self._out = out if out is not None else sys.stderr
        self._console = Console(file=self._out, highlight=False)
        self._terminal = self._console.is_terminal if terminal is None else terminal
        self._status: Status | None = None
        self._shown: str | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def show(self, text: str) -> None:
        """Show what the wait is at now; the same text twice shows once."""
        if text == self._shown:
            return
        self._shown = text
        if not self._terminal:
            print(f"  {text}", file=self._out, flush=True)
        elif self._status is None:
            self._status = self._console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def close(self) -> None:
        """Take the spinner line away (a terminal), leaving the screen to what follows."""
        if self._status is not None:
            self._status.stop()
            self._status = None


@dataclass(frozen=True)
class Work:
    """Work a command asked of the cluster and waits for: what it is, and the commands
    that check it and, where there is one, stop it."""

    what: str
    check: str
    stop: str | None = None

    def carries_on(self) -> str:
        """`the stop of web-1 carries on in the cluster (check: `kube inspect web-1`)`."""
        how = f"check: `{self.check}`" + (f"; stop: `{self.stop}`" if self.stop else "")
        return f"{self.what} carries on in the cluster ({how})"


class WaitInterrupted(Exception):
    """Ctrl-C during a wait: kube stopped waiting, the cluster did not stop working."""

    def __init__(self, work: Work) -> None:
        super().__init__(f"stopped waiting; {work.carries_on()}")
        self.work = work


@contextlib.contextmanager
def interruptible(work: Work) -> Iterator[None]:
    """Ctrl-C within the block is WaitInterrupted, naming the work that carries on."""
    try:
        yield
    except KeyboardInterrupt:
        raise WaitInterrupted(work) from None


@dataclass(frozen=True)
class Look:
    """One look at the cluster during a wait: whether the work is done, and where it is
    (`web: 2/3 running`)."""

    done: bool
    text: str


def wait(
    client: Client,
    work: Work,
    look: Callable[[], Look],
    timeout: float,
    progress: Progress | None = None,
) -> Look:
    """Look again at each change of the tasks until the look says done; WaitTimeout after
    `timeout` seconds, WaitInterrupted at Ctrl-C, NoManagerError when no manager answers
    any more (asked after a few quiet seconds, Client.still_answered).

    The changes are followed from before the first look, so none slips between; a burst
    of them is one look (Client.task_changes), not one per task event."""
    shown = progress if progress is not None else Progress()
    with interruptible(work), shown:
        changes = client.task_changes(timeout)
        try:
            seen = look()
            while not seen.done:
                shown.show(seen.text)
                cue = next(changes, None)
                if cue is None:  # the timeout elapsed
                    raise WaitTimeout(
                        f"gave up waiting after {timeout:g}s at: {seen.text}; {work.carries_on()}"
                    )
                if cue:
                    seen = look()
                else:  # nothing changed for a while: is a manager still there?
                    client.still_answered(work.what)
        finally:
            changes.close()
    return seen
