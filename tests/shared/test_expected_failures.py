"""A handler or timer that fails for a reason kube knows (the store gone) logs one line;
an unexpected failure keeps its traceback (shared/bus/consume.py, shared/bus/timers.py)."""

from __future__ import annotations

import logging

import pytest

from shared.bus.consume import Consumer, handle
from shared.bus.message import Delivery
from shared.bus.timers import Timer, fire
from shared.errors import StoreUnavailable


def raising(exc: Exception) -> object:
    def fn(*args: object) -> None:
        raise exc

    return fn


def delivery() -> Delivery:
    return Delivery(
        body=b"{}",
        exchange="",
        routing_key="task.submit",
        headers={},
        reply_to=None,
        correlation_id=None,
        message_id=None,
        user_id=None,
        redelivered=False,
        queue="kube.manager.commands",
        tag=1,
        generation=1,
    )


@pytest.mark.parametrize(
    ("exc", "traceback"),
    [(StoreUnavailable("server closed the connection"), False), (ValueError("bug"), True)],
)
def test_a_timer_failure_logs_a_traceback_only_when_unexpected(
    exc: Exception, traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.bus"):
        fire("kube-manager", Timer(1.0, raising(exc)))  # type: ignore[arg-type]
    (record,) = caplog.records
    assert (record.exc_info is not None) == traceback
    assert str(exc) in record.getMessage() or traceback


@pytest.mark.parametrize(
    ("exc", "traceback"),
    [(StoreUnavailable("server closed the connection"), False), (ValueError("bug"), True)],
)
def test_a_handler_failure_logs_a_traceback_only_when_unexpected(
    exc: Exception, traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rejected: list[bool] = []
    consumer = Consumer("kube.manager.commands", raising(exc), requeue_on_error=True)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="shared.bus"):
        handle("kube-manager", consumer, delivery(), lambda d, requeue: rejected.append(requeue))
    (record,) = caplog.records
    assert (record.exc_info is not None) == traceback and rejected == [True]
