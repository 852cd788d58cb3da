"""deploy/rabbitmq/definitions.json is what `kube.definitions` makes, with its dev passwords."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kube.definitions import Plan, check_password, definitions
from shared.topology import CLIENT_COMMAND_KEYS, OPERATOR_COMMAND_KEYS

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


def test_only_the_manager_may_read_an_exchange() -> None:
    # given the generated permissions, and every exchange kube declares
    data = definitions(Plan(vhost="kube", nodes=("n1",)))
    exchanges = [e["name"] for e in data["exchanges"]]

    # then no user but the manager reads one: binding needs read on the source exchange,
    # and a client with read on kube.events could bind it into kube.commands
    for permission in data["permissions"]:
        readable = [e for e in exchanges if re.fullmatch(permission["read"], e)]
        assert readable == ([] if permission["user"] != "kube-manager" else exchanges), permission
    # and the client and the operator read the events stream instead
    readers = {
        p["user"] for p in data["permissions"] if re.fullmatch(p["read"], "kube.events.stream")
    }
    assert readers == {"kube-manager", "kube-client", "kube-operator"}


def test_the_client_and_the_operator_split_the_commands_by_routing_key() -> None:
    data = definitions(Plan(vhost="kube", nodes=("n1",)))
    write = {
        t["user"]: t["write"] for t in data["topic_permissions"] if t["exchange"] == "kube.commands"
    }
    may = {
        user: {
            key
            for key in (*CLIENT_COMMAND_KEYS, *OPERATOR_COMMAND_KEYS)
            if re.fullmatch(regex, key)
        }
        for user, regex in write.items()
    }
    assert may == {
        "kube-client": set(CLIENT_COMMAND_KEYS),
        "kube-operator": set(OPERATOR_COMMAND_KEYS),
    }
    assert all(re.fullmatch(regex, "query.nodes") for regex in write.values())
