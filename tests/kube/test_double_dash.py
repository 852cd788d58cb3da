"""`--` ends the options, as in every Unix command, and no word is dropped silently."""

from __future__ import annotations

import argparse

import pytest

from kube import cli


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[argparse.Namespace, list[str]]]:
    """The parsed commands `cli.main` would run (nothing is sent)."""
    calls: list[tuple[argparse.Namespace, list[str]]] = []

    def run(args: argparse.Namespace, command: list[str]) -> int:
        calls.append((args, command))
        return cli.OK

    monkeypatch.setattr(cli, "_run", run)
    return calls


def test_a_task_may_follow_double_dash(ran: list[tuple[argparse.Namespace, list[str]]]) -> None:
    # when a user writes `--` before a positional argument, as any Unix command takes it
    assert cli.main(["stop", "--", "web-1a2b"]) == cli.OK
    assert cli.main(["inspect", "--", "-odd"]) == cli.OK
    # then it is the argument, and no container command
    assert [(a.id, command) for a, command in ran] == [("web-1a2b", []), ("-odd", [])]


def test_a_word_no_command_takes_is_refused_not_dropped(
    ran: list[tuple[argparse.Namespace, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["ps", "--", "foo"], ["run", "--image", "b", "foo", "--", "echo"]):
        # when a command is given a word it takes nowhere
        with pytest.raises(SystemExit) as ended:
            cli.main(argv)
        # then it is a usage error naming the word, and nothing runs
        assert ended.value.code == cli.USAGE
        assert "unrecognized arguments" in capsys.readouterr().err
    assert ran == []


def test_the_container_command_is_every_word_after_the_first_double_dash(
    ran: list[tuple[argparse.Namespace, list[str]]],
) -> None:
    # when the container's command holds options of kube's and a `--` of its own
    argv = ["run", "--image", "b", "--", "sh", "-p", "-1", "--timeout", "5", "--", "x"]
    assert cli.main(argv) == cli.OK
    # then they are the command's, untouched
    ((args, command),) = ran
    assert command == ["sh", "-p", "-1", "--timeout", "5", "--", "x"]
    assert args.ports is None
