"""deploy/rabbitmq/definitions.json is what `kube.definitions` makes, with its dev passwords."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kube.definitions import Plan, check_password, definitions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REGENERATE = (
    "python -m kube.definitions --vhost kube --node node-1 --node node-2"
    " --password-file deploy/rabbitmq/dev-passwords > deploy/rabbitmq/definitions.json"
)


def dev_passwords() -> dict[str, str]:
    lines = (DEPLOY / "rabbitmq" / "dev-passwords").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {user: password for user, password in pairs}


def without_hashes(data: dict[str, Any]) -> dict[str, Any]:
    users = [{**user, "password_hash": "<hash>"} for user in data["users"]]
    return {**data, "users": users}


def test_the_committed_definitions_are_the_generated_ones() -> None:
    committed = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    plan = Plan(vhost="kube", nodes=("node-1", "node-2"), passwords=dev_passwords())
    assert without_hashes(committed) == without_hashes(definitions(plan)), (
        f"stale: regenerate with `{REGENERATE}`"
    )
    for user in committed["users"]:
        assert check_password(dev_passwords()[user["name"]], user["password_hash"]), user


def test_a_user_without_a_password_cannot_log_in_with_one() -> None:
    data = definitions(Plan(vhost="kube", nodes=("n",)))
    assert {user["password_hash"] for user in data["users"]} == {""}


def test_workers_only_adds_a_node_without_touching_the_rest() -> None:
    data = definitions(Plan(vhost="kube", nodes=("node-3",)), workers_only=True)
    assert [user["name"] for user in data["users"]] == ["kube-worker-node-3"]
    assert [queue["name"] for queue in data["queues"]] == ["kube.node.node-3"]
    assert data["exchanges"] == []
    assert [(b["source"], b["routing_key"]) for b in data["bindings"]] == [
        ("kube.dispatch", "node-3")
    ]
