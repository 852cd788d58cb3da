"""The address a worker advertises: given (and checked), or found from its broker route."""

from __future__ import annotations

import ipaddress

import pytest

from shared.errors import SettingsError
from worker.address import detect, parse


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("10.0.0.7", "10.0.0.7"),
        (" 10.0.0.7 ", "10.0.0.7"),
        ("FD00::1", "fd00::1"),
        ("node-1.example.com", "node-1.example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("fe80::1", "fe80::1"),
    ],
)
def test_an_ip_address_or_host_name_is_kept(given: str, kept: str) -> None:
    assert parse(given) == kept


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("bad_name", "neither an IP address nor a host name"),
        ("-node", "neither an IP address nor a host name"),
        ("a" * 64 + ".com", "has a label of 64 characters; a host name's labels"),
        ("a" * 64, "(the parts between dots) have 63 at most"),
        ("0.0.0.0", "'0.0.0.0' is an unspecified address, which no other machine can dial"),
        ("::", "is an unspecified address"),
        ("224.0.0.1", "is a multicast address"),
        ("fe80::1%eth0", "'fe80::1%eth0' has a zone (%eth0), which means something only on"),
        ("10.0.0.300", "is not a valid IP address"),
        ("http://node-1", "neither an IP address nor a host name"),
        ("", "neither an IP address nor a host name"),
    ],
)
def test_anything_else_is_refused_naming_the_flag(given: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(given)
    assert str(caught.value).startswith("--advertise-address: ") and says in str(caught.value)


def test_a_broker_on_loopback_is_reached_from_loopback() -> None:
    assert detect("amqp://guest:guest@127.0.0.1:5672/%2F") == "127.0.0.1"


def test_a_remote_broker_is_reached_from_a_routable_address() -> None:
    # TEST-NET-1 is never answered, but the kernel still picks a route and its source address
    found = detect("amqp://u:p@192.0.2.10:5672/")
    if found is None:
        pytest.skip("this host has no route beyond loopback")
    assert not ipaddress.ip_address(found).is_loopback


def test_a_broker_name_that_does_not_resolve_gives_no_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert detect("amqp://u:p@no-such-broker.invalid:5672/") is None
    assert "give --advertise-address" in caplog.text
