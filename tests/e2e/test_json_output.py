"""`--json` prints JSON and nothing else on stdout, on every command that has the flag
(progress and messages go to stderr), so `kube ... --json | jq` always works."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from kube.cli import build_parser
from tests.conftest import Cluster

pytestmark = pytest.mark.e2e


def commands_with_json(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """The commands (`orphans remove` for a nested one) whose parser has --json."""
    found: set[str] = set()
    for action in parser._actions:
        if "--json" in action.option_strings:
            found.add(prefix.strip())
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= commands_with_json(sub, f"{prefix} {name}")
    return found


GROUPS = {"secret", "config", "stack", "volume"}
"""Commands whose --json is on a subcommand (`secret ls`)."""


def test_every_command_with_json_prints_only_json(
    cluster: Cluster, busybox_image: str, tmp_path: Path
) -> None:
    ran: set[str] = set()

    def as_json(*args: str, lines: bool = False) -> Any:
        result = cluster.kube(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        ran.add(" ".join(args[:2]) if args[0] in GROUPS else args[0])
        if lines:  # JSON lines: one document a line
            return [json.loads(line) for line in result.stdout.splitlines()]
        return json.loads(result.stdout)  # the whole of stdout: nothing before or after

    image = ("--image", busybox_image, "--pull-policy", "never")
    # given a task submitted without waiting, one waited for, and a service waited for
    detached = as_json("run", "--json", "--name", "j1", *image, "--", "sleep", "300")
    assert list(detached) == ["id"]
    waited = as_json("run", "--json", "--wait", "--name", "j2", *image, "--", "sleep", "300")
    assert waited["state"] == "running" and waited["name"] == "j2"
    service = as_json(
        "run", "--json", "--wait", "--name", "jsvc", "--replicas", "2", *image,
        "--", "sleep", "300",
    )  # fmt: skip
    assert (service["name"], service["replicas"], service["running"]) == ("jsvc", 2, 2)

    # then every listing and record is JSON alone
    ids = {task["id"] for task in as_json("ps", "--json")}
    assert {detached["id"], waited["id"]} <= ids
    assert "orphans" in as_json("ps", "--orphans", "--json")
    assert as_json("inspect", waited["id"], "--json")["id"] == waited["id"]
    assert {node["name"] for node in as_json("nodes", "--json")} == set(cluster.nodes)
    assert [m["role"] for m in as_json("managers", "--json")] == ["leader"]
    assert "jsvc" in {s["name"] for s in as_json("services", "--json")}
    assert as_json("endpoints", "jsvc", "--json")["name"] == "jsvc"
    assert isinstance(as_json("rm", "--all-ended", "--json"), dict)
    keys = {event["key"] for event in as_json("events", "--json", lines=True)}
    assert "manager.leader" in keys and "task.running" in keys
    assert as_json("secret", "ls", "--json") == [] and as_json("config", "ls", "--json") == []
    assert as_json("jobs", "--json") == [] and as_json("volume", "ls", "--json") == []
    # and so are a stack's diff, its listing and its tasks
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"services:\n  a:\n    image: {busybox_image}\n    command: sleep 300\n")
    assert isinstance(as_json("diff", "-f", str(stack), "--name", "js", "--json"), (dict, list))
    deployed = cluster.kube("deploy", "-f", str(stack), "--name", "js")
    assert deployed.returncode == 0, deployed.stderr
    assert "js" in json.dumps(as_json("stack", "ls", "--json"))
    assert isinstance(as_json("stack", "ps", "js", "--json"), list)

    # and no command with --json was left out
    assert ran == commands_with_json(build_parser())
