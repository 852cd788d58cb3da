"""`kube deploy`, `kube diff` and `kube stack ls|ps|rm`: stacks of services from a Compose
file (docs/stacks.md). Thin: read the file, plan, call the client, render."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kube import render
from kube.arguments import seconds
from kube.client import Client
from shared.errors import RequestError
from shared.models import JobRecord
from shared.wire import STACK_LABEL

if TYPE_CHECKING:
    from kube.stack import compose

# kube.stack (YAML, the Compose JSON Schema) is imported by the commands that read a stack
# file, not by every kube command: it is a fifth of the CLI's start-up time.

FILE_COMMANDS = ("deploy", "diff")


def add_parsers(sub: Any) -> None:
    for verb, text in (
        ("deploy", "create or update the services of a stack file (Compose format)"),
        ("diff", "show what `kube deploy` would change, service by service, field by field"),
    ):
        parser = sub.add_parser(verb, help=text, description=text + "; docs/stacks.md")
        parser.add_argument("-f", "--file", type=Path, required=True, help="the stack file")
        parser.add_argument("--name", help="the stack's name (default: the file's `name:`)")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="remove the stack's services the file lost (else: reported, kept)",
        )
        if verb == "deploy":
            parser.add_argument(
                "--wait-timeout",
                type=seconds,
                default=300.0,
                metavar="SECONDS",
                help="how long to wait for a service_healthy dependency (default 300)",
            )
        else:
            parser.add_argument("--json", action="store_true", help="the changes as JSON")
    stack = sub.add_parser("stack", help="list, show or remove stacks")
    verbs = stack.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", help="list stacks and their services")
    ls.add_argument("--json", action="store_true", help="the stacks as JSON")
    ps = verbs.add_parser("ps", help="list the tasks of a stack (not ended ones unless -a)")
    ps.add_argument("name", metavar="STACK", help="the stack's name")
    ps.add_argument("-a", "--all", action="store_true", help="show ended tasks too")
    ps.add_argument("--json", action="store_true", help="the task records as JSON")
    rm = verbs.add_parser("rm", help="stop and remove every service of a stack")
    rm.add_argument("name", metavar="STACK", help="the stack's name")
    rm.add_argument(
        "--wait-timeout",
        type=seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long the tasks may take to stop (default 120)",
    )


def read(args: argparse.Namespace) -> compose.Stack:
    from kube.stack import compose, loader

    document = loader.read(args.file, os.environ)
    for name in document.unset:  # as Compose warns
        print(f"kube: {args.file}: {name} is not set; using an empty string", file=sys.stderr)
    return compose.stack(document, args.name, os.environ, loader.env_file)


def deploy_or_diff(args: argparse.Namespace, client: Client, stack: compose.Stack) -> int:
    from kube.stack import deploy, plan

    check_files(args, client, stack)
    changes = plan.plan(stack, client.services(), args.prune, stack_jobs(client))
    if args.command == "diff":
        if args.json:
            print(json.dumps([c.as_json() for c in changes], indent=2))
        else:
            print(plan.render(changes))
        return 0
    if not plan.changed(changes):
        print(f"stack {stack.name}: no changes")
        return 0
    deploy.apply(client, stack, changes, args.wait_timeout, print)
    return 0


def check_files(args: argparse.Namespace, client: Client, stack: compose.Stack) -> None:
    """Refuse a stack mounting a secret or config the manager has not, before anything
    is sent (a deploy would otherwise create the services before the one that mounts it)."""
    from kube.stack import plan

    kinds = plan.used_kinds(stack)
    known = {kind: {f.name for f in client.files(kind)} for kind in kinds}
    missing = plan.missing_files(stack, known)
    if missing:
        raise plan.MissingFiles(
            f"{args.file}: {'; '.join(missing)}; nothing was sent: create it first"
            " (`kube secret create NAME FILE`, `kube config create NAME FILE`)"
        )


def stack_jobs(client: Client) -> list[JobRecord]:
    """The scheduled jobs of any stack."""
    from kube.stack import plan

    return plan.of_stack_any([row.job for row in client.jobs()])


def stacks(args: argparse.Namespace, client: Client) -> int:
    from kube.stack import deploy, plan

    services, jobs = client.services(), stack_jobs(client)
    if args.verb == "ls":
        labels = [s.spec.labels for s in plan.of_stack_any(services)] + [
            j.spec.labels for j in jobs
        ]
        stacks = sorted({label[STACK_LABEL] for label in labels})
        found = {name: plan.of_stack(services, name) for name in stacks}
        found_jobs = {name: plan.of_stack(jobs, name) for name in stacks}
        if args.json:
            data = [
                {
                    "name": n,
                    "services": [s.name for s in found[n]],
                    "jobs": [j.name for j in found_jobs[n]],
                }
                for n in stacks
            ]
            print(json.dumps(data, indent=2))
        else:
            rows = [[n, str(len(found[n])), str(len(found_jobs[n]))] for n in stacks]
            print(render.table(["NAME", "SERVICES", "JOBS"], rows))
        return 0
    mine = plan.of_stack(services, args.name)
    mine_jobs = plan.of_stack(jobs, args.name)
    if not mine and not mine_jobs:
        raise RequestError(f"no stack {args.name!r} (see `kube stack ls`)")
    names = {s.name for s in mine}
    job_names = {j.name for j in mine_jobs}
    if args.verb == "ps":
        tasks = [
            t
            for t in client.list()
            if (t.service in names or t.job in job_names) and (args.all or not t.state.terminal)
        ]
        if args.json:
            print(json.dumps([t.model_dump(mode="json") for t in tasks], indent=2))
        else:
            print(render.tasks(tasks))
        return 0
    for name in sorted(job_names):  # first: no new run starts while the services go
        client.remove_job(name)
        print(f"removed job {name}")
    if names:
        deploy.remove(client, sorted(names), args.wait_timeout)
    for name in sorted(names):
        print(f"removed service {name}")
    return 0
