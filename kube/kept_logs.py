"""`kube logs` of ended attempts (`--previous`, `--attempt K`, and the output the manager
kept when the live one cannot be had), and the attempts table of `kube inspect`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import IO

from kube.arguments import whole
from kube.client import Client
from kube.render import table
from shared.errors import RequestError, SettingsError
from shared.kept import AttemptSummary, KeptLogs

log = logging.getLogger(__name__)


def add_flags(logs: argparse.ArgumentParser) -> None:
    """`--previous` and `--attempt K` of `kube logs`."""
    which = logs.add_mutually_exclusive_group()
    which.add_argument(
        "--previous",
        "-p",
        action="store_true",
        help="the kept end of the last ended attempt's output (as kubectl logs --previous)",
    )
    which.add_argument(
        "--attempt",
        type=whole(1),
        metavar="K",
        help="the kept end of attempt K's output (kube inspect lists the attempts)",
    )


def check_flags(args: argparse.Namespace) -> None:
    """Refuse the flags kept output cannot honour: it has no times, and has ended."""
    if not (args.previous or args.attempt is not None):
        return
    which = "--previous" if args.previous else "--attempt"
    for flag, given in (("--since", args.since), ("-t", args.timestamps), ("-f", args.follow)):
        if given:
            raise SettingsError(
                f"{which} shows kept output, which has no times and has ended: not with {flag}"
            )


def header(kept: KeptLogs) -> str:
    """One line saying whose output this is: `(kept output of attempt 3, which exited with
    code 1 at ...; the container is gone)`."""
    how = "ended" if kept.exit_code is None else f"exited with code {kept.exit_code}"
    parts = [f"kept output of attempt {kept.attempt}, which {how} at {when(kept)}"]
    if kept.why:
        parts.append(kept.why)
    if kept.cut:
        parts.append("only the last 64 KiB of each stream were kept")
    return f"({'; '.join(parts)})"


def when(kept: KeptLogs) -> str:
    return kept.at.isoformat(timespec="seconds")


def instead(client: Client, task_id: str, why: str, tail: int | None) -> KeptLogs:
    """What the manager kept of the task's last ended attempt, shown because its live
    output cannot be had (`why`, said in the header); without any, an error (exit 4)
    that says why."""
    try:
        found = client.task_logs(task_id, tail, previous=True)
    except RequestError as exc:
        log.info("task %s: nothing kept to show instead: %s", task_id, exc)
        raise RequestError(why) from exc
    if isinstance(found, str):  # the manager answers --previous with kept output only
        raise RequestError(why)
    return found.model_copy(update={"why": why})


def write(
    found: str | KeptLogs,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    stdout: bool = True,
    stderr: bool = True,
) -> None:
    """Print output to `out` (stdout). Kept output: its header on `err` (stderr), its
    stdout on `out`, then its stderr on `err`, as `docker logs` splits them (so that
    stdout stays the output itself, for pipes, and the last words on stderr come last);
    `stdout` or `stderr` False leaves that stream out."""
    out, err = out or sys.stdout, err or sys.stderr
    if isinstance(found, str):
        out.write(found)
        return
    print(header(found), file=err, flush=True)
    if stdout:
        out.write(found.stdout)
        out.flush()
    if stderr:
        err.write(found.stderr)
        err.flush()


def with_attempts(text: str, attempts: Sequence[AttemptSummary]) -> str:
    """`kube inspect`'s text, and its attempts table after it."""
    if not attempts:
        return text
    rows = [
        [
            str(a.attempt),
            a.node or "-",
            "-" if a.started is None else a.started.isoformat(timespec="seconds"),
            "-" if a.ended is None else a.ended.isoformat(timespec="seconds"),
            a.state.value,
            "-" if a.exit_code is None else str(a.exit_code),
            "yes" if a.kept else "no",
            a.reason or "",
        ]
        for a in attempts
    ]
    headers = ["ATTEMPT", "NODE", "STARTED", "ENDED", "STATE", "EXIT", "KEPT", "REASON"]
    return f"{text}\n\nattempts:\n{table(headers, rows)}"
