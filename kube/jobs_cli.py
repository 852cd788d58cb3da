"""`kube jobs` (list, rm, run) and the `kube run` flags that make a scheduled job
(docs/jobs.md). Thin like the rest of the CLI: parse, call the client, render."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kube.arguments import whole
from kube.client import Client
from kube.render import table
from shared.cron import Concurrency
from shared.models import JobRow, SkippedTicks, SkipReason

COMMAND = "jobs"


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    """`kube run` flags of a job: with --schedule, the spec is a job, run at each tick."""
    group = parser.add_argument_group("scheduled job (docs/jobs.md)")
    group.add_argument(
        "--schedule",
        metavar="CRON",
        help="makes a job: a run at each tick of this cron expression",
    )
    group.add_argument("--timezone", metavar="ZONE", help="the schedule's zone (default UTC)")
    group.add_argument(
        "--concurrency",
        choices=[c.value for c in Concurrency],
        help="while the previous run lasts: skip the tick (forbid, the default), start"
        " another (allow), or stop it and start (replace)",
    )
    group.add_argument(
        "--catch-up",
        type=whole(0),
        metavar="N",
        help="missed ticks (the newest N) run after the manager was down (default 0)",
    )
    group.add_argument(
        "--keep-runs", type=whole(1), metavar="N", help="ended runs kept (default 10)"
    )


def schedule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields the flags give."""
    given = {
        "schedule": args.schedule,
        "timezone": args.timezone,
        "concurrency": args.concurrency,
        "catch_up": args.catch_up,
        "keep_runs": args.keep_runs,
    }
    return {field: value for field, value in given.items() if value is not None}


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser(COMMAND, help="list scheduled jobs, remove one, or run one now")
    jobs.add_argument("--json", action="store_true", help="the jobs as JSON")
    verbs = jobs.add_subparsers(dest="verb")
    rm = verbs.add_parser("rm", help="remove a job; its runs that have not ended are stopped")
    rm.add_argument("name", metavar="JOB", help="the job's name")
    now = verbs.add_parser("run", help="start a run of a job now, beside its schedule")
    now.add_argument("name", metavar="JOB", help="the job's name")


def run(args: argparse.Namespace, client: Client) -> None:
    if args.verb == "rm":
        print(client.remove_job(args.name))
    elif args.verb == "run":
        print(client.run_job(args.name))
    else:
        rows = client.jobs()
        if args.json:
            print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        else:
            print(render_jobs(rows))


def render_jobs(rows: Sequence[JobRow]) -> str:
    """`kube jobs`: a line per job, its newest run with its state, and its next tick."""
    headers = ["NAME", "SCHEDULE", "TZ", "CONCURRENCY", "LAST RUN", "NEXT RUN", "SKIPPED"]
    lines = []
    for row in rows:
        job = row.job
        last = "-"
        if job.last_run is not None:
            last = f"{job.last_run} ({row.last_run_state.value if row.last_run_state else 'gone'})"
        lines.append(
            [
                job.name,
                job.spec.schedule or "-",
                job.spec.timezone,
                job.spec.concurrency.value,
                last,
                _when(job.next_tick),
                skipped(job.last_skip),
            ]
        )
    return table(headers, lines)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


def skipped(skip: SkippedTicks | None) -> str:
    """The newest skipped ticks, as a sentence."""
    if skip is None:
        return "-"
    if skip.reason == SkipReason.STILL_RUNNING:
        return f"{_when(skip.tick)}: {skip.run or 'the previous run'} was still running"
    ticks = "1 tick" if skip.count == 1 else f"{skip.count} ticks"
    return f"{ticks} missed while no manager ran, the newest {_when(skip.tick)}"
