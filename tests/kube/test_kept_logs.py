"""`kube logs` of kept output on the client's side (kube/kept_logs.py): what it shows
instead of a live output, and the flags it refuses."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from kube import kept_logs
from kube.cli import main
from shared.errors import RequestError
from shared.kept import KeptLogs

AT = datetime(2026, 11, 28, 6, 1, 12, tzinfo=UTC)
KEPT = KeptLogs(
    task_id="web-1", attempt=3, node="n1", exit_code=1, at=AT, stdout="a\nb\n", stderr="oops\n"
)


class FakeClient:
    """Answers `task_logs(previous=True)` with what it holds, or the manager's error."""

    def __init__(self, kept: KeptLogs | None) -> None:
        self.kept = kept
        self.asked: list[tuple[str, int | None, bool]] = []

    def task_logs(
        self,
        task_id: str,
        tail: int | None = None,
        attempt: int | None = None,
        previous: bool = False,
    ) -> KeptLogs:
        self.asked.append((task_id, tail, previous))
        if self.kept is None:
            raise RequestError("no output of any ended attempt of task web-1 is kept")
        return self.kept


def test_kept_output_shown_instead_says_why_in_its_header_and_keeps_streams_apart() -> None:
    client = FakeClient(KEPT)
    found = kept_logs.instead(client, "web-1", "worker n1 did not answer", 5)  # type: ignore[arg-type]
    out, err = io.StringIO(), io.StringIO()
    kept_logs.write(found, out, err)
    assert client.asked == [("web-1", 5, True)]
    assert out.getvalue() == "a\nb\n"
    assert err.getvalue() == (
        "(kept output of attempt 3, which exited with code 1 at 2026-11-28T06:01:12+00:00;"
        " worker n1 did not answer)\noops\n"
    )
    only = io.StringIO(), io.StringIO()
    kept_logs.write(found, *only, stdout=False)
    assert only[0].getvalue() == "" and only[1].getvalue().endswith(")\noops\n")


def test_nothing_kept_is_an_error_that_says_why_the_live_output_cannot_be_had() -> None:
    with pytest.raises(RequestError, match="^node n1 of task web-1 is down$"):
        kept_logs.instead(FakeClient(None), "web-1", "node n1 of task web-1 is down", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--previous", "--since", "5m"], "kube: --previous shows kept output, which has no"),
        (["--attempt", "2", "-t"], "not with -t"),
        (["--previous", "-f"], "not with -f"),
        (["--tail", "1000001"], "kube logs: argument --tail: 1000001 is more than 1000000"),
        (["--since", "0s"], "kube logs: argument --since: '0s' is no time ago"),
        (["--since", "0.0m"], "kube logs: argument --since: '0.0m' is no time ago"),
    ],
)
def test_flags_kube_logs_cannot_honour_are_usage_errors(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # (said before any broker is asked: none answers here)
    try:
        code = main(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/none", "logs", "web", *argv])
    except SystemExit as exc:  # refused by the parser
        code = int(str(exc.code))
    assert code == 2
    assert said in capsys.readouterr().err
