"""A worker told that the manager refuses its results for its clock says so, as an error
(issue 13: it logged nothing and never appeared in `kube nodes`)."""

from __future__ import annotations

import logging

import pytest

from shared.codec import encode
from shared.messages import ClockAhead
from tests.support.dispatches import acked, delivery
from tests.worker.conftest import stub_worker
from worker.runtime.mock import MockRuntime


def test_a_worker_told_its_clock_is_ahead_logs_an_error_naming_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker, bus = stub_worker(MockRuntime("n1"))
    try:
        with caplog.at_level(logging.ERROR, logger="worker.service"):
            worker.on_dispatch(delivery(1, encode(ClockAhead(ahead=3600.0, limit=300.0))))
        worker.flush()
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
            "worker n1: the manager refuses this worker's results: its clock is 3600 s ahead"
            " of the manager's (at most 300 s); fix the clock (NTP)"
        ]
        assert acked(bus) == [1]
    finally:
        worker.close()
