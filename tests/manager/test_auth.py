"""Which broker users may report results for which nodes, and send which commands (pure)."""

from __future__ import annotations

import pytest

from manager.auth import WorkerAuth, amqp_user, command_sender_allowed, result_sender_allowed
from shared import topology

STRICT = WorkerAuth(trusted_users=frozenset({"kube-manager"}))


def test_a_worker_user_may_report_for_its_own_node() -> None:
    assert result_sender_allowed("kube-worker-node-1", "node-1", STRICT) is None


def test_a_worker_user_may_not_report_for_another_node() -> None:
    reason = result_sender_allowed("kube-worker-node-1", "node-2", STRICT)
    assert reason is not None and "node-1" in reason and "node-2" in reason


@pytest.mark.parametrize("user", ["kube-client", "guest", "kube-worker-", "kube-workernode-1"])
def test_a_user_that_is_not_a_worker_is_refused(user: str) -> None:
    reason = result_sender_allowed(user, "node-1", STRICT)
    assert reason is not None and repr(user) in reason


def test_a_result_without_user_id_is_refused_unless_allowed() -> None:
    reason = result_sender_allowed(None, "node-1", STRICT)
    assert reason is not None and "user_id" in reason
    lax = WorkerAuth(require_user_id=False)
    assert result_sender_allowed(None, "node-1", lax) is None


def test_a_trusted_user_may_report_for_any_node() -> None:
    assert result_sender_allowed("kube-manager", "anything", STRICT) is None


def test_from_env_trusts_the_managers_own_user_by_default() -> None:
    # given a single-user dev setup where the manager logs in as guest
    auth = WorkerAuth.from_env("amqp://guest:guest@localhost:5672/%2F", env={})
    # then guest (what the workers log in as too) may report for every node
    assert auth.trusted_users == {"guest"} and auth.require_user_id
    assert result_sender_allowed("guest", "laptop-1", auth) is None
    # and with least-privilege users, kube-manager is trusted and workers are checked
    auth = WorkerAuth.from_env("amqps://kube-manager:pw@rabbit:5671/kube", env={})
    assert result_sender_allowed("kube-worker-n1", "n1", auth) is None
    assert result_sender_allowed("kube-client", "n1", auth) is not None


def test_from_env_reads_the_variables() -> None:
    env = {
        "KUBE_WORKER_USER_PREFIX": "w-",
        "KUBE_TRUSTED_RESULT_USERS": "ops, robot ,",
        "KUBE_REQUIRE_USER_ID": "false",
    }
    auth = WorkerAuth.from_env("amqp://kube-manager:pw@rabbit/kube", env=env)
    assert auth == WorkerAuth("w-", frozenset({"ops", "robot"}), require_user_id=False)
    assert result_sender_allowed("w-n1", "n1", auth) is None
    assert result_sender_allowed("kube-manager", "n1", auth) is not None


@pytest.mark.parametrize(
    ("url", "user"),
    [
        ("amqp://kube-worker-node-1:pw@h/v", "kube-worker-node-1"),
        ("amqp://us%40er:pw@h/v", "us@er"),
        ("amqp://h:5672/v", "guest"),
    ],
)
def test_amqp_user_reads_the_url(url: str, user: str) -> None:
    assert amqp_user(url) == user


# -- an operator's commands ---------------------------------------------------------------


@pytest.mark.parametrize("key", topology.OPERATOR_COMMAND_KEYS)
def test_an_operators_command_from_the_client_user_is_refused(key: str) -> None:
    # given the client user's cordon, uncordon or drain, when the manager checks it
    reason = command_sender_allowed(key, "kube-client", STRICT)

    # then it is refused, naming the user, the command and who may send it
    assert reason == (
        f"user 'kube-client' may not send {key}: it is an operator's command"
        " (operator users: kube-operator; KUBE_OPERATOR_USERS)"
    )


@pytest.mark.parametrize("user", ["kube-operator", "kube-manager"])
def test_an_operator_or_a_trusted_user_may_act_on_nodes(user: str) -> None:
    for key in topology.OPERATOR_COMMAND_KEYS:
        assert command_sender_allowed(key, user, STRICT) is None


def test_an_operators_command_without_user_id_is_refused_unless_allowed() -> None:
    reason = command_sender_allowed(topology.DRAIN_KEY, None, STRICT)
    assert reason is not None and "carries no user_id" in reason
    assert command_sender_allowed(topology.DRAIN_KEY, None, WorkerAuth(require_user_id=False)) is (
        None
    )


@pytest.mark.parametrize("key", [*topology.CLIENT_COMMAND_KEYS, "query.tasks"])
def test_the_clients_commands_are_not_checked(key: str) -> None:
    assert command_sender_allowed(key, "kube-client", STRICT) is None
    assert command_sender_allowed(key, None, STRICT) is None


def test_operator_users_come_from_the_environment() -> None:
    # given KUBE_OPERATOR_USERS, when auth is built, then those users are the operators
    auth = WorkerAuth.from_env("amqp://m:pw@h/", {"KUBE_OPERATOR_USERS": "ops-a, ops-b"})
    assert auth.operator_users == {"ops-a", "ops-b"}
    assert command_sender_allowed(topology.CORDON_KEY, "ops-b", auth) is None
    assert command_sender_allowed(topology.CORDON_KEY, "kube-operator", auth) is not None
    # and by default the one is kube-operator
    assert WorkerAuth.from_env("amqp://m:pw@h/", {}).operator_users == {"kube-operator"}
