"""The kept-output benchmark runs at a reduced size and prints its JSON line."""

from __future__ import annotations

import json

import pytest

from bench import kept_output


def test_the_kept_output_benchmark_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    # when it keeps 30 outputs of 3 tasks (beyond the 5 attempts kept of each)
    kept_output.main(["--attempts", "30", "--tasks", "3", "--batch", "7"])
    # then its line has the figures
    line = json.loads(capsys.readouterr().out)
    assert (line["benchmark"], line["attempts"], line["store"]) == ("kept-output", 30, "sqlite")
    assert line["body_bytes"] > 64 * 1024
    assert line["cpu_ms_per_attempt"] > 0
