"""Who may report results: a worker's broker user speaks for its own node and no other.

RabbitMQ validates the AMQP `user_id` property: a publisher may leave it out, but may not
set it to any user other than the one it logged in as (the channel is closed with 406
PRECONDITION_FAILED). So a result that carries `user_id` proves which broker user sent it.
In the least-privilege deployment (`deploy/rabbitmq/`) each worker has a user of its own,
`kube-worker-<node>`, and the manager accepts a result only when that user matches the
node the result is about. Topic permissions already stop `kube-worker-a` from publishing
with routing key `result.*.b`; this check covers the body's `node`, which the broker
cannot see.

In a single-user setup (everything as `guest` on a laptop) there is nothing to separate:
the user the manager itself logs in as is trusted for every node.

An operator's acts on nodes (cordon, uncordon, drain) are checked the same way: the
broker's topic permissions keep `kube-client` to the client's routing keys, and the
manager accepts those commands only from an operator user (`kube-operator`) or a
trusted one, so a broker without topic permissions does not open them to everyone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shared import topology
from shared.settings import split_urls

DEFAULT_WORKER_PREFIX = "kube-worker-"
DEFAULT_OPERATOR_USERS = "kube-operator"


@dataclass(frozen=True)
class WorkerAuth:
    """Which broker users may publish results, for which nodes, and an operator's commands."""

    user_prefix: str = DEFAULT_WORKER_PREFIX
    """The user `<prefix><node>` may report for `<node>` only."""

    trusted_users: frozenset[str] = frozenset()
    """Users that may report for any node: the one shared user of a single-user setup."""

    require_user_id: bool = True
    """Refuse results and operator commands without `user_id`; off only while migrating."""

    operator_users: frozenset[str] = frozenset({DEFAULT_OPERATOR_USERS})
    """Users that may cordon, uncordon and drain nodes, besides the trusted ones."""

    @classmethod
    def from_env(cls, amqp_url: str, env: Mapping[str, str] | None = None) -> WorkerAuth:
        """Build from KUBE_WORKER_USER_PREFIX, KUBE_TRUSTED_RESULT_USERS, KUBE_REQUIRE_USER_ID
        and KUBE_OPERATOR_USERS (comma-separated, default kube-operator).

        KUBE_TRUSTED_RESULT_USERS (comma-separated) defaults to the user of amqp_url, the
        manager's own: with least-privilege users no worker logs in as `kube-manager`, and
        with one shared user that user is every component.
        """
        env = os.environ if env is None else env
        trusted = env.get("KUBE_TRUSTED_RESULT_USERS")
        users = (
            {user.strip() for user in trusted.split(",") if user.strip()}
            if trusted is not None
            else {amqp_user(split_urls(amqp_url)[0])}  # every URL has the same user
        )
        operators = env.get("KUBE_OPERATOR_USERS", DEFAULT_OPERATOR_USERS)
        return cls(
            operator_users=frozenset(u.strip() for u in operators.split(",") if u.strip()),
            user_prefix=env.get("KUBE_WORKER_USER_PREFIX", DEFAULT_WORKER_PREFIX),
            trusted_users=frozenset(users),
            require_user_id=env.get("KUBE_REQUIRE_USER_ID", "1").lower()
            not in ("0", "false", "no"),
        )


def amqp_user(amqp_url: str) -> str:
    """The user an AMQP URL logs in as; pika, like RabbitMQ's clients, defaults to guest."""
    username = urlsplit(amqp_url).username
    return unquote(username) if username else "guest"


def result_sender_allowed(user_id: str | None, node: str, auth: WorkerAuth) -> str | None:
    """Why a result about `node`, published as `user_id`, must be refused; None if it may pass."""
    if user_id is None:
        if auth.require_user_id:
            return (
                f"result about node {node!r} carries no user_id: workers must publish results"
                " with user_id set to their broker user"
            )
        return None
    if user_id in auth.trusted_users:
        return None
    if not user_id.startswith(auth.user_prefix) or user_id == auth.user_prefix:
        return f"user {user_id!r} is not a worker user (expected {auth.user_prefix}<node>)"
    if user_id != f"{auth.user_prefix}{node}":
        own = user_id[len(auth.user_prefix) :]
        return f"user {user_id!r} may report for node {own!r} only, not {node!r}"
    return None


def command_sender_allowed(routing_key: str, user_id: str | None, auth: WorkerAuth) -> str | None:
    """Why a command published as `user_id` must be refused; None if it may pass.

    Only an operator's commands are checked; anyone who may publish to kube.commands may
    send the client's.
    """
    if routing_key not in topology.OPERATOR_COMMAND_KEYS:
        return None
    operators = ", ".join(sorted(auth.operator_users)) or "none"
    if user_id is None:
        if not auth.require_user_id:
            return None
        return (
            f"{routing_key} carries no user_id: an operator's command must be published with"
            f" user_id set to its broker user (operator users: {operators})"
        )
    if user_id in auth.operator_users or user_id in auth.trusted_users:
        return None
    return (
        f"user {user_id!r} may not send {routing_key}: it is an operator's command"
        f" (operator users: {operators}; KUBE_OPERATOR_USERS)"
    )
