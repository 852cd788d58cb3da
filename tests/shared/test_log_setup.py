"""Log formats: text with extra fields, JSON lines with the task or node a line is about."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.log_setup import configure


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_text_lines_carry_extra_fields(stream: io.StringIO) -> None:
    configure("INFO", "text", stream)
    logging.getLogger("kube.test").info("task %s: running", "web-1", extra={"attempt": 2})
    line = stream.getvalue().strip()
    assert line.endswith("INFO kube.test: task web-1: running attempt=2")


def test_json_lines_name_their_task_or_node(stream: io.StringIO) -> None:
    configure("DEBUG", "json", stream)
    log = logging.getLogger("kube.test")
    log.info("task %s: scheduled on %s", "web-1a2b", "node-1")
    log.warning("node %s: down", "node-2")
    log.debug("worker %s: engine unavailable", "node-3", extra={"attempt": 1})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    task, node, worker, failure = (json.loads(line) for line in stream.getvalue().splitlines())
    assert task["task"] == "web-1a2b" and task["message"] == "task web-1a2b: scheduled on node-1"
    assert (task["level"], task["logger"]) == ("INFO", "kube.test")
    assert node["node"] == "node-2" and "task" not in node
    assert (worker["node"], worker["attempt"]) == ("node-3", 1)
    assert "ValueError: boom" in failure["exception"]


def test_the_level_filters(stream: io.StringIO) -> None:
    configure("WARNING", "json", stream)
    logging.getLogger("kube.test").info("quiet")
    assert stream.getvalue() == ""


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure("INFO", "xml")


def test_pika_errors_are_logged_without_their_traceback_except_at_debug(
    stream: io.StringIO,
) -> None:
    # given pika logging an error it raises, with its traceback (as on a refused login)
    def pika_logs_a_failure() -> None:
        try:
            raise ConnectionError("ACCESS_REFUSED")
        except ConnectionError:
            logging.getLogger("pika.adapters.blocking_connection").exception("workflow failed")
            logging.getLogger("kube.test").exception("ours")

    # when logging at INFO, then pika's line is one line, and kube's own keep theirs
    configure("INFO", "text", stream)
    pika_logs_a_failure()
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("ERROR pika.adapters.blocking_connection: workflow failed")
    assert (
        lines[1].endswith("ERROR kube.test: ours")
        and lines[2] == "Traceback (most recent call last):"
    )
    # and at DEBUG, pika's traceback is kept for whoever is digging
    stream.truncate(0)
    stream.seek(0)
    configure("DEBUG", "text", stream)
    pika_logs_a_failure()
    assert stream.getvalue().count("Traceback") == 2
