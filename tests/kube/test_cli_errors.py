"""Whatever a user types, the CLI answers with one line and an exit code, never a
traceback (found by a hostile run: bad URLs, bad timeouts, bad numbers, missing files)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from kube import cli, cluster_cli
from shared.errors import SettingsError
from shared.models import OrphanList, OrphanRecord


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--amqp-url", "notaurl", "nodes"], "does not begin with amqp://"),
        (["--amqp-url", "http://x/", "ps"], "is not an AMQP URL"),
        (["run", "-f", "/nonexistent/spec.json"], "No such file or directory"),
        (["worker", "--advertise-address", ""], "--advertise-address: '' is neither"),
        (["worker", "--advertise-address", "0.0.0.0"], "an unspecified address"),
        (["worker", "--policy", "/nonexistent/policy.toml"], "cannot read the worker policy"),
    ],
)
def test_a_bad_setting_or_file_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.USAGE
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("\n") == 1


def test_a_worker_without_an_engine_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given no engine where DOCKER_HOST points
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    # when a worker starts, then it exits 5 (a service it needs is not there), in one line
    assert cli.main(["worker", "--name", "w", "--metrics-port", "0"]) == cli.BROKER_DOWN
    err = capsys.readouterr().err
    assert err.startswith("kube: connect to the Docker engine: the Docker engine does not answer")
    assert "point DOCKER_HOST at one" in err and err.count("\n") == 1


def test_a_message_of_several_lines_is_said_in_one(capsys: pytest.CaptureFixture[str]) -> None:
    # given a driver's message of two lines (psycopg's, for a database that is not there)
    assert cli._say("connection failed\n\tIs the server running?", 5) == 5
    # then it is said in one
    assert capsys.readouterr().err == "kube: connection failed Is the server running?\n"


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
        try:
            code = cli.main(["--amqp-url", vhost, "--timeout", "2", *argv])
        except SystemExit as exc:  # refused by the parser, before anything is asked
            code = exc.code
        assert code == cli.USAGE, argv
        err = capsys.readouterr().err
        assert err.startswith("kube") and err.count("\n") == 1, err
        assert "Traceback" not in err, err


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
    with pytest.raises(SettingsError) as caught:
        cli.run_task(args, [], client=None)  # type: ignore[arg-type]  # refused before use

    # then it is refused as a usage error (exit 2), naming the file and the key
    assert str(caught.value) == f"{path}: {says}"


def test_a_spec_that_does_not_validate_is_a_usage_error_in_plain_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given an image name of 5000 characters (a name holds 255 at most)
    argv = ["run", "--name", "w", "--image", "a" * 5000]
    # when it is run
    args = cli.build_parser().parse_args(argv)
    with pytest.raises(SettingsError) as caught:
        cli.run_task(args, ["true"], client=None)  # type: ignore[arg-type]  # refused before use
    # then it is refused before sending, as a usage error, in a plain sentence
    assert str(caught.value) == "not a valid task: image: 5000 characters long, at most 255 allowed"


def test_a_bad_name_is_said_in_our_words_not_as_a_pattern() -> None:
    args = cli.build_parser().parse_args(["run", "--name", "bad name", "--image", "busybox"])
    with pytest.raises(SettingsError) as caught:
        cli.run_task(args, ["true"], client=None)  # type: ignore[arg-type]  # refused before use
    assert str(caught.value) == (
        "not a valid task: name: 'bad name' is not a valid name: 1 to 63 letters, digits,"
        " '_', '.' or '-', starting with a letter or a digit"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--wiat"], "kube run: unrecognized arguments: --wiat (see `kube run --help`)"),
        (["ps", "--x"], "kube ps: unrecognized arguments: --x (see `kube ps --help`)"),
        (
            ["secret", "create", "a", "b", "--x"],
            "kube secret create: unrecognized arguments: --x (see `kube secret create --help`)",
        ),
    ],
)
def test_an_unknown_flag_points_to_its_commands_help(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.build_parser().parse_args(argv)
    assert ended.value.code == cli.USAGE
    assert capsys.readouterr().err == says + "\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["up", "--workers", "100000000"], "--workers: 100000000 is not within 1 to 64"),
        (["up", "--workers", "0"], "--workers: 0 is not within 1 to 64"),
        (["up", "--workers", "-2"], "--workers: -2 is not within 1 to 64"),
        (["up", "--name-prefix", "bad name"], "--name-prefix: 'bad name' cannot begin a node"),
        (["up", "--ready-timeout", "-5"], "--ready-timeout: -5 is not a number of seconds"),
        (["up", "--ready-timeout", "0"], "--ready-timeout: 0 is not a number of seconds"),
        (["up", "--metrics-port", "70000"], "--metrics-port: 70000 is not a port"),
        (["manager", "--metrics-port", "70000"], "--metrics-port: 70000 is not a port"),
        (["worker", "--metrics-port", "-1"], "--metrics-port: -1 is not a port"),
    ],
)
def test_kube_up_and_the_services_refuse_a_bad_flag_before_starting_anything(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.USAGE
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["up", "--metrics-port", "65535"], "--metrics-port 65535: the workers take the next 2"),
        (["up", "--db", "/nonexistent/up.db"], "--db /nonexistent/up.db: no such folder"),
    ],
)
def test_kube_up_refuses_options_that_do_not_fit_together(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"kube: {says}") and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [["orphans", "remove"], ["orphans", "remove", "x", "--all"]])
def test_orphans_remove_with_neither_or_both_an_id_and_all_is_a_usage_error(
    argv: list[str], vhost: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--amqp-url", vhost, "--timeout", "2", *argv])
    assert exited.value.code == cli.USAGE
    err = capsys.readouterr().err
    assert "give an orphan's id, or --all" in err and "Traceback" not in err


def test_orphans_remove_all_says_how_many_its_nodes_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a node with 74 orphans, 50 listed in its heartbeats (the manager asked for those)
    class Answering:
        def remove_orphans(self, *_: object) -> OrphanList:
            listed = OrphanRecord(
                node="n1",
                task_id="w-1",
                attempt=1,
                container_id="c" * 64,
                name="kube.n1.w-1.1",
                image="b",
                cluster="old",
                adoptable=True,
            )
            return OrphanList(orphans=(listed,) * 50, left_out=24)

    args = argparse.Namespace(verb="remove", id=None, all=True, node="n1", cluster=None)
    # then the command says the 24 were not removed, and exits non-zero
    assert cluster_cli.orphans(args, Answering()) == 1  # type: ignore[arg-type]
    out = capsys.readouterr()
    assert out.out.count("removing") == 50
    assert "24 more orphan containers were not listed" in out.err and "run this again" in out.err


def test_the_exit_codes_of_docs_cli_md_are_the_clis() -> None:
    # given the table under "## Exit codes" in docs/cli.md
    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| +(\d+) \| `([A-Z_]+)` \|", section, flags=re.MULTILINE)
    # then each row is the CLI's constant of that name, and every constant has a row
    assert {name: int(code) for code, name in rows} == {
        name: getattr(cli, name)
        for name in (
            "OK", "TASK_FAILED", "USAGE", "NO_MANAGER", "REFUSED", "BROKER_DOWN", "QUEUED",
            "CHANGED", "BUG", "TIMED_OUT", "INTERRUPTED", "PIPE_CLOSED", "EXEC_FAILED",
        )
    }  # fmt: skip


def test_an_unexpected_error_is_one_line_unless_asked_for_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a command that meets an error kube does not expect (a bug)
    def run(args: argparse.Namespace, command: list[str]) -> int:
        raise RuntimeError("dict changed size during iteration")

    monkeypatch.setattr(cli, "_run", run)
    monkeypatch.delenv("KUBE_DEBUG", raising=False)
    # then it is one line naming it, and its own exit code
    assert cli.main(["ps"]) == cli.BUG
    err = capsys.readouterr().err
    assert err == (
        "kube: unexpected error, a bug of kube's: RuntimeError: dict changed size during"
        " iteration (KUBE_DEBUG=1 shows its traceback)\n"
    )
    # and with KUBE_DEBUG, or in a service (whose log keeps it), the traceback is there
    monkeypatch.setenv("KUBE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["ps"])
    monkeypatch.delenv("KUBE_DEBUG")
    with pytest.raises(RuntimeError):
        cli.main(["worker", "--name", "w"])
