"""The command line itself, without a broker: help on every flag, an example on every
command, and the global flags before or after the subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kube.cli import build_parser
from kube.examples import subcommands


def test_every_flag_has_help_and_every_command_an_example() -> None:
    # given kube's parser, walked down to its nested subcommands
    parser = build_parser()
    commands = dict(subcommands(parser))
    assert {"run", "ps", "restart", "update", "completion", "orphans remove"} <= set(commands)
    # then each flag and argument says what it is for, and each command shows an example
    bare = [
        f"kube {path} {action.dest}"
        for path, sub in [("", parser), *commands.items()]
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert bare == []
    without = [
        path
        for path, sub in [("", parser), *commands.items()]
        if not (sub.epilog or "").startswith("examples:\n  ") or "kube " not in (sub.epilog or "")
    ]
    assert without == []
    unsaid = [
        name
        for sub in [parser, *commands.values()]
        for action in sub._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, choice in zip(action.choices, action._choices_actions, strict=True)
        if not choice.help
    ]
    assert unsaid == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout", "5", "--amqp-url", "amqp://a/", "ps"],
        ["ps", "--timeout", "5", "--amqp-url", "amqp://a/"],
        ["--amqp-url", "amqp://b/", "ps", "--timeout", "5", "--amqp-url", "amqp://a/"],
        ["orphans", "adopt", "c0ffee123456", "--timeout", "5", "--amqp-url", "amqp://a/"],
    ],
)
def test_the_global_flags_are_taken_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.timeout == 5.0 and args.amqp_url == ["amqp://a/"]


def test_the_global_flags_keep_their_defaults_when_not_given() -> None:
    args = build_parser().parse_args(["nodes"])
    assert args.timeout is None and args.amqp_url is None


def test_a_bad_global_flag_after_the_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["ps", "--timeout", "-1"])
    assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_docs_cli_has_a_section_for_every_command() -> None:
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    missing = [path for path, _ in subcommands(build_parser()) if f"### kube {path}\n" not in text]
    assert missing == []
