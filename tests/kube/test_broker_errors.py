"""A broker that refuses, or is not there, is named for what it is: the login, the vhost,
or the address where nothing answers. Through the real CLI, against the real broker."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kube.cli import BROKER_DOWN
from tests.conftest import AMQP_HOST, ROOT, rabbitmqctl
from tests.support.ports import free_port


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str


def kube(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube", "--amqp-url", url, "--timeout", "5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the CLI printed on stderr (and nothing on stdout, no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture
def broker_user(vhost: str) -> Iterator[BrokerUser]:
    """A broker user of this test, with no permission anywhere; deleted after it."""
    user = BrokerUser(f"kube-test-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    rabbitmqctl("add_user", user.name, user.password)
    try:
        yield user
    finally:
        rabbitmqctl("delete_user", user.name)


def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_a_wrong_password_says_authentication_failed_for_the_user(
    vhost: str, broker_user: BrokerUser
) -> None:
    # given a user who may use the vhost
    rabbitmqctl("set_permissions", "-p", vhost_of(vhost), broker_user.name, ".*", ".*", ".*")
    # when a command logs in with the wrong password
    url = f"amqp://{broker_user.name}:not-{broker_user.password}@{AMQP_HOST}/{vhost_of(vhost)}"
    result = kube(url, "ps")
    # then it says so, naming the user and the broker, and never the password
    assert result.returncode == BROKER_DOWN
    line = one_line(result)
    assert line.startswith(
        f"kube: authentication failed for user '{broker_user.name}' at {AMQP_HOST}: check the"
        " user name and password"
    ), line
    assert broker_user.password not in line


def test_a_vhost_that_does_not_exist_is_named_with_how_to_make_it(vhost: str) -> None:
    # given a vhost nobody created
    missing = f"kube-test-missing-{uuid.uuid4().hex[:8]}"
    # when a command uses it
    result = kube(f"amqp://guest:guest@{AMQP_HOST}/{missing}", "nodes")
    # then it names the vhost, and how to create it and grant it
    assert result.returncode == BROKER_DOWN
    line = one_line(result)
    assert line.startswith(f"kube: the vhost '{missing}' does not exist at {AMQP_HOST}"), line
    assert f"`rabbitmqctl add_vhost {missing}`" in line
    assert f"`rabbitmqctl set_permissions -p {missing} guest '.*' '.*' '.*'`" in line


def test_a_user_without_access_to_the_vhost_is_told_how_to_grant_it(
    vhost: str, broker_user: BrokerUser
) -> None:
    # given a user with the right password and no permission on the vhost
    url = f"amqp://{broker_user.name}:{broker_user.password}@{AMQP_HOST}/{vhost_of(vhost)}"
    # when a command uses it, then the vhost and the grant are named
    result = kube(url, "ps")
    assert result.returncode == BROKER_DOWN
    line = one_line(result)
    assert f"the vhost '{vhost_of(vhost)}' does not exist" in line
    assert f"(or user '{broker_user.name}' has no access to it)" in line
    assert f"set_permissions -p {vhost_of(vhost)} {broker_user.name} " in line


@pytest.mark.broker
def test_a_broker_not_listening_is_named_by_the_address_of_the_url() -> None:
    # given a port of this machine nothing listens on (not 5672)
    port = free_port()
    # when a command is pointed there
    result = kube(f"amqp://guest:guest@127.0.0.1:{port}/kube", "ps")
    # then it says nothing answers at that address, and why
    assert result.returncode == BROKER_DOWN
    line = one_line(result)
    assert line.startswith(f"kube: nothing answers at 127.0.0.1:{port} (connection refused):")
    assert "5672" not in line


@pytest.mark.broker
def test_a_host_that_does_not_resolve_is_named() -> None:
    result = kube("amqp://guest:guest@no-such-host.invalid/x", "ps")
    assert result.returncode == BROKER_DOWN
    assert one_line(result).startswith(
        "kube: nothing answers at no-such-host.invalid:5672 (no such host):"
    )
