"""Several broker URLs: how they are given and checked, and the order they are tried in."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika.exceptions
import pytest

from kube.cli import build_parser, main
from manager.auth import WorkerAuth
from shared.bus import brokers
from shared.bus.brokers import Brokers, rotation
from shared.errors import BrokerUnreachable, LoginRefused, MessagingError, SettingsError
from shared.rpc import RpcChannel
from shared.settings import Settings, redact, split_urls
from tests.support.ports import free_port

A = "amqp://kube:secret-a@rabbit-1:5672/kube"
B = "amqp://kube:secret-b@rabbit-2:5672/kube"
C = "amqps://kube:secret-c@rabbit-3/kube"
OTHER = "amqp://other:secret-d@rabbit-4/kube"  # another user: not to be mixed with the rest


def test_one_url_is_a_list_of_one() -> None:
    assert Settings(amqp_url=A).amqp_urls == (A,)


def test_commas_separate_urls_and_spaces_around_them_are_dropped() -> None:
    assert Settings(amqp_url=f"{A}, {B} ,{A}").amqp_urls == (A, B, A)


def test_environment_takes_a_comma_separated_list() -> None:
    settings = Settings.from_env({"KUBE_AMQP_URL": f"{A},{B}"})
    assert settings.amqp_urls == (A, B)


def test_repeated_amqp_url_flag_gives_a_list_that_wins_over_the_environment() -> None:
    args = build_parser().parse_args(["--amqp-url", A, "--amqp-url", f"{B},{A}", "ps"])
    settings = Settings.from_env({"KUBE_AMQP_URL": "amqp://ignored"}, amqp_url=args.amqp_url)
    assert settings.amqp_urls == (A, B, A)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            f"{A},http://kube:secret-x@web/",
            r"^broker URL 2 of 2, 'http://kube:\*\*\*@web/', is not",
        ),
        (f"{A},,{B}", r"^broker URL 2 of 3 is empty"),
        (f"{A},", r"^broker URL 2 of 2 is empty"),
        (
            "amqp://kube:secret-x@rabbit:56a72/",
            r"^the broker URL, 'amqp://kube:\*\*\*@rabbit:56a72/', has a bad port",
        ),
        ("rabbit-1:5672", r"^the broker URL does not begin with amqp:// or amqps://"),
        # a comma in a password cuts the URL in two: neither piece is shown
        ("amqp://kube:secret,PW@h:5672/v,amqp://kube:secret,PW@g/v", r"^broker URL 2 of 4 does"),
        ("amqp://kube:secret,34@h:5672/v", r"^broker URL 2 of 2 does not .* written %2C"),
        # a '/' or '#' in a password ends the host part early: the 'port' would be it
        ("amqp://kube:secret/x@h:5672/v", r"^the broker URL cannot be read: .* %2F"),
        ("amqp://kube:secret#x@h:5672/v", r"^the broker URL cannot be read: .* %23"),
        (
            "amqp://kube:secret@h:5672/v?heartbeat=abc",
            r"^the broker URL, 'amqp://kube:\*\*\*@h:5672/v\?heartbeat=abc', has a bad option",
        ),
        (
            "amqp://kube:secret@[::1:5672/x",
            r"^the broker URL, 'amqp://kube:\*\*\*@\[::1:5672/x', cannot be read: Invalid IPv6",
        ),
        (
            "amqp://kube:secret%zz@h/v",
            r"^the broker URL, 'amqp://kube:\*\*\*@h/v', has a '%' .* two hex digits",
        ),
        (
            f"{A},amqp://rabbit-2/kube",
            r"^the broker URLs log in as different users \(guest, kube\)",
        ),
        (
            f"{A},amqp://kube:secret-b@rabbit-2/other",
            r"^the broker URLs name different vhosts \(kube, other\): .* different clusters",
        ),
        (
            f"{A},amqp://kube:secret-b@rabbit-2",
            r"^the broker URLs name different vhosts \(/, kube\)",
        ),
    ],
)
def test_a_bad_url_is_named_in_one_line_without_its_password(text: str, why: str) -> None:
    with pytest.raises(SettingsError, match=why) as caught:
        Settings(amqp_url=text)
    assert "secret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_urls_may_be_separated_by_newlines_too() -> None:
    assert Settings(amqp_url=f"{A}\n{B}\n").amqp_urls == (A, B)
    assert Settings(amqp_url=f"  {A} ,\n {B}").amqp_urls == (A, B)


def test_redact_hides_the_passwords_of_a_list_separated_by_newlines() -> None:
    assert redact(f"{A}\n{B}") == (
        "amqp://kube:***@rabbit-1:5672/kube,amqp://kube:***@rabbit-2:5672/kube"
    )


def test_redact_hides_a_password_with_an_at_sign_or_a_slash() -> None:
    assert redact("amqp://kube:se@cr/et@h:5672/v") == "amqp://kube:***@h:5672/v"


def test_a_long_list_is_counted_past_its_first_urls() -> None:
    urls = [f"amqp://kube:secret@rabbit-{n}/kube" for n in range(500)]
    text = redact(",".join(urls))
    assert text.endswith("amqp://kube:***@rabbit-2/kube (and 497 more)")
    assert len(text) < 200


def test_redact_hides_every_password_of_a_list() -> None:
    assert redact(f"{A},{B}") == (
        "amqp://kube:***@rabbit-1:5672/kube,amqp://kube:***@rabbit-2:5672/kube"
    )


def test_every_url_of_a_component_logs_in_as_the_same_user() -> None:
    with pytest.raises(
        SettingsError, match=r"^the broker URLs log in as different users \(kube, other\)"
    ):
        Settings(amqp_url=f"{A},{OTHER}")


def test_manager_trusts_the_user_of_its_urls_by_default() -> None:
    auth = WorkerAuth.from_env(f"{A},{B}", env={})
    assert auth.trusted_users == {"kube"}


def test_rotation_starts_at_the_given_broker_and_wraps() -> None:
    assert rotation(3, 0) == [0, 1, 2]
    assert rotation(3, 2) == [2, 0, 1]
    assert rotation(1, 0) == [0]


class FakeConnections:
    """Stands for pika.BlockingConnection: hosts in `down` refuse, the others answer."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.tried: list[str] = []

    def __call__(self, params: Any) -> str:
        self.tried.append(params.host)
        if params.host in self.down:
            raise pika.exceptions.AMQPConnectionError("refused")
        return f"connection to {params.host}"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> FakeConnections:
    fake = FakeConnections(down=set())
    monkeypatch.setattr(brokers.pika, "BlockingConnection", fake)
    return fake


def test_connects_to_the_first_broker_that_answers(connections: FakeConnections) -> None:
    connections.down = {"rabbit-1"}
    ring = Brokers(Settings(amqp_url=f"{A},{B},{C}"))
    assert ring.connect("test") == "connection to rabbit-2"
    assert connections.tried == ["rabbit-1", "rabbit-2"]
    assert ring.current == B


def test_after_a_loss_the_next_broker_is_tried_first(connections: FakeConnections) -> None:
    ring = Brokers(Settings(amqp_url=f"{A},{B},{C}"))
    ring.connect("test")  # on rabbit-1, which then fails
    connections.down = {"rabbit-1"}
    connections.tried.clear()
    assert ring.connect("test") == "connection to rabbit-2"
    assert connections.tried == ["rabbit-2"]
    connections.down = {"rabbit-3"}
    connections.tried.clear()
    assert ring.connect("test") == "connection to rabbit-1"  # rabbit-3 refused, wrapped round
    assert connections.tried == ["rabbit-3", "rabbit-1"]


def test_when_none_answers_each_address_is_named(connections: FakeConnections) -> None:
    connections.down = {"rabbit-1", "rabbit-2"}
    ring = Brokers(Settings(amqp_url=f"{A},{B}"))
    with pytest.raises(BrokerUnreachable) as caught:
        ring.connect("test")
    assert caught.value.addresses == ("rabbit-1:5672", "rabbit-2:5672")
    assert isinstance(caught.value.__cause__, pika.exceptions.AMQPConnectionError)  # the last
    assert connections.tried == ["rabbit-1", "rabbit-2"]
    assert ring.current is None


def test_a_broker_that_refused_the_login_says_more_than_one_that_did_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a first broker that refuses the password, and a second that does not answer
    def connect(params: Any) -> None:
        if params.host == "rabbit-1":
            raise pika.exceptions.ProbableAuthenticationError("ACCESS_REFUSED")
        raise pika.exceptions.AMQPConnectionError("refused")

    monkeypatch.setattr(brokers.pika, "BlockingConnection", connect)
    # when connecting, then the refusal is what is raised, naming the user and the broker
    with pytest.raises(LoginRefused) as caught:
        Brokers(Settings(amqp_url=f"{A},{B}")).connect("test")
    assert (caught.value.user, caught.value.address) == ("kube", "rabbit-1:5672")


def test_split_urls_keeps_order() -> None:
    assert split_urls(f"{C},{A}") == (C, A)


def test_a_client_that_reaches_no_broker_names_them_all_without_passwords() -> None:
    # given two brokers on closed ports of this machine
    urls = [f"amqp://kube:secret@127.0.0.1:{free_port()}/kube" for _ in range(2)]
    # when a client connects, then the error names both, and no password
    with pytest.raises(MessagingError) as caught:
        RpcChannel(Settings(amqp_url=",".join(urls), request_timeout=1))
    text = str(caught.value)
    assert text.startswith("nothing answers at any of 127.0.0.1:")
    assert all(url.split("@")[1].split("/")[0] in text for url in urls)
    assert "secret" not in text


def test_the_error_shown_in_docs_is_the_one_the_cli_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given the example of docs/brokers.md
    page = (Path(__file__).resolve().parents[2] / "docs" / "brokers.md").read_text()
    shown = re.search(r"`(kube: broker URL 2 of 3, [^`]*?)\.\.\.`", page)
    assert shown is not None
    # when the CLI is given such a list, then it prints that line and exits 2
    urls = ["amqp://kube:pw@rabbit-1/kube", "http://kube:pw@rabbit-2/", "amqp://kube:pw@r3/kube"]
    code = main([arg for url in urls for arg in ("--amqp-url", url)] + ["ps"])
    assert code == 2
    assert capsys.readouterr().err.startswith(shown.group(1))


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port that accepts TCP connections and never speaks AMQP (Redis, a frozen node):
    the kernel completes the handshake for a listening socket nobody reads."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


@pytest.fixture
def quick_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """pika's 15 s for the whole TCP+AMQP bring-up, cut to 0.5 s for these tests."""
    real = brokers.connection_parameters

    def quick(*args: Any, **kwargs: Any) -> pika.URLParameters:
        params = real(*args, **kwargs)
        params.stack_timeout = 0.5
        return params

    monkeypatch.setattr(brokers, "connection_parameters", quick)


@pytest.mark.usefixtures("quick_handshake")
def test_a_broker_that_accepts_but_never_answers_is_passed_over(
    mute_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # given a first URL that accepts TCP and never answers AMQP, and a second that refuses
    mute = f"amqp://kube:secret@127.0.0.1:{mute_port}/kube"
    closed = f"amqp://kube:secret@127.0.0.1:{free_port()}/kube"
    ring = Brokers(Settings(amqp_url=f"{mute},{closed}"))
    # when connecting, then the mute one is logged and passed over, and the next one tried
    with pytest.raises(BrokerUnreachable) as caught:
        ring.connect("test")
    assert isinstance(caught.value.__cause__, pika.exceptions.AMQPConnectionError)  # the 2nd's
    assert f"broker {mute.replace('secret', '***')} does not answer" in caplog.text
    assert "trying the next" in caplog.text


@pytest.mark.usefixtures("quick_handshake")
def test_a_client_given_a_mute_broker_says_it_cannot_reach_it(mute_port: int) -> None:
    url = f"amqp://kube:secret@127.0.0.1:{mute_port}/kube"
    with pytest.raises(MessagingError, match=rf"^nothing answers at 127.0.0.1:{mute_port} \(it"):
        RpcChannel(Settings(amqp_url=url, request_timeout=1))


@pytest.mark.parametrize(
    "url",
    [
        "amqp://kube:secret@h/v?heartbeat=abc",
        "amqp://kube:secret@[::1:5672/x",
        "amqp://kube:12,34@h/v",
    ],
)
def test_the_cli_refuses_a_malformed_url_in_one_line(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--amqp-url", url, "ps"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kube: ") and err.count("\n") == 1
    assert "secret" not in err and "12" not in err and "Traceback" not in err
