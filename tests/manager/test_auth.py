"""Which broker users may report results for which nodes (pure: no broker)."""

from __future__ import annotations

import pytest

from manager.auth import WorkerAuth, amqp_user, result_sender_allowed

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
