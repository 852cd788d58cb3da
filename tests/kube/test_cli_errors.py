"""Whatever a user types, the CLI answers with one line and an exit code, never a
traceback (found by a hostile run: bad URLs, bad timeouts, bad numbers, missing files)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kube import cli
from shared.errors import DecodeError


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--amqp-url", "notaurl", "nodes"], "does not begin with amqp://"),
        (["--amqp-url", "http://x/", "ps"], "is not an AMQP URL"),
        (["run", "-f", "/nonexistent/spec.json"], "No such file or directory"),
        (["worker", "--advertise-address", ""], "--advertise-address: '' is neither"),
        (["worker", "--advertise-address", "0.0.0.0"], "an unspecified address"),
    ],
)
def test_a_bad_setting_or_file_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.USAGE
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout", "nan", "ps"],
        ["--timeout", "-1", "ps"],
        ["manager", "--max-nodes", "0"],
        ["manager", "--heartbeat-interval", "inf"],
        ["worker", "--concurrency", "0"],
    ],
)
def test_a_flag_out_of_range_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.USAGE
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "code", "says"),
    [(KeyboardInterrupt, cli.INTERRUPTED, "interrupted"), (BrokenPipeError, cli.PIPE_CLOSED, "")],
)
def test_ctrl_c_and_a_closed_pipe_end_quietly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: type[BaseException],
    code: int,
    says: str,
) -> None:
    def run(args: argparse.Namespace, command: list[str]) -> int:
        raise raised

    monkeypatch.setattr(cli, "_run", run)
    monkeypatch.setattr(cli, "_silence_stdout", lambda: None)  # keep pytest's own stdout
    assert cli.main(["ps"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and says in err


def test_a_bad_argument_to_a_request_is_a_usage_error(
    vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["logs", "x", "--tail", "-1"], ["scale", "x", "-1"], ["inspect", "bad!"]):
        assert cli.main(["--amqp-url", vhost, "--timeout", "2", *argv]) == cli.USAGE, argv
        err = capsys.readouterr().err
        assert err.startswith("kube: ") and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ('{"name": "w", "image": "b", "cpu": 1, "cpu": 2}', "key 'cpu' given more than once"),
        (
            '{"name": "w", "image": "b", "ports": [{"container": 80, "container": 81}]}',
            "key 'container' given more than once",
        ),
        ('{"name": "w", "image": "b", "cpu": NaN}', "NaN is not a number JSON allows"),
        ('["w", "b"]', "a TaskSpec is a JSON object"),
    ],
)
def test_a_spec_file_is_read_as_the_manager_reads_it(
    spec: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a spec file with a key given twice (or what JSON does not have)
    path = tmp_path / "spec.json"
    path.write_text(spec)

    # when it is run
    args = cli.build_parser().parse_args(["run", "-f", str(path)])
    with pytest.raises(DecodeError) as caught:
        cli.run_task(args, [], client=None)  # type: ignore[arg-type]  # refused before use

    # then it is refused, naming the file and the key
    assert caught.value.reason == f"{path}: {says}"
