"""The pending-backlog benchmark runs end to end at a reduced size and prints its JSON line."""

from __future__ import annotations

import json

import pytest

from bench import pending_backlog


@pytest.mark.e2e
def test_the_backlog_benchmark_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    # given a tiny backlog, a short idle wait and a short steady phase on two mock workers
    argv = ["--blocked", "20", "--workers", "2", "--rate", "20", "--seconds", "1"]
    argv += ["--idle-seconds", "1", "--settle-seconds", "0.5", "--timeout", "60"]
    # when it runs
    code = pending_backlog.main(argv)
    # then every task got where it should and the line has the figures
    line = json.loads(capsys.readouterr().out)
    assert code == 0, line
    assert line["benchmark"] == "pending-backlog"
    assert line["backlog"] == {**line["backlog"], "tasks": 20, "finished": True}
    assert line["steady"]["running"] == 20
    assert line["steady"]["p99_ms"] is not None
    assert line["idle"]["manager_cpu_share"] is not None
    assert set(line["meets_target"]) == {"steady_p99", "idle_cpu"}
