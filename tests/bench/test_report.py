"""The benchmarks' one JSON line: valid JSON even when a phase has no sample."""

from __future__ import annotations

import json
import math

import pytest

from bench.report import emit, percentile


def test_percentile_is_the_nearest_rank_and_nan_when_empty() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 99) == 5.0
    assert math.isnan(percentile([], 99))


def test_a_phase_without_samples_prints_null_not_nan(capsys: pytest.CaptureFixture[str]) -> None:
    emit("demo", {"burst": {"p99_ms": percentile([], 99), "rates": [1.5, math.inf]}})
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    parsed = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))
    assert parsed["benchmark"] == "demo"
    assert parsed["burst"] == {"p99_ms": None, "rates": [1.5, None]}
    assert "commit" in parsed["machine"]
