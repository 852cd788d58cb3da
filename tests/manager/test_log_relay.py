"""The manager's relay of logs requests: who asked, what they get, and when it gives up."""

from __future__ import annotations

from datetime import UTC, datetime

from manager.log_relay import LogRelay
from shared.messages import LogsReply

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ask(relay: LogRelay, node: str = "n1", task_id: str = "web-1") -> str:
    request = relay.request(
        reply_to="amq.rabbitmq.reply-to.abc",
        correlation_id="c-1",
        node=node,
        task_id=task_id,
        attempt=2,
        tail=10,
        now=100.0,
    )
    assert (request.task_id, request.attempt, request.tail) == (task_id, 2, 10)
    assert request.ttl == relay.timeout  # relative: the broker's clock judges it
    return request.request_id


def reply(request_id: str, node: str = "n1", task_id: str = "web-1", **fields: str) -> LogsReply:
    return LogsReply(node=node, at=NOW, request_id=request_id, task_id=task_id, **fields)


def test_the_workers_output_goes_to_the_asker_once() -> None:
    relay = LogRelay()
    request_id = ask(relay)
    answer = relay.answer(reply(request_id, output="hello\n"))
    assert answer is not None
    assert (answer.reply_to, answer.correlation_id) == ("amq.rabbitmq.reply-to.abc", "c-1")
    assert answer.reply.ok and answer.reply.result == "hello\n"
    assert answer.reply.id == "web-1"
    # a second copy (a redelivery) finds nobody waiting
    assert relay.answer(reply(request_id, output="hello\n")) is None
    assert len(relay) == 0


def test_a_workers_error_reaches_the_asker_as_a_refusal() -> None:
    relay = LogRelay()
    answer = relay.answer(reply(ask(relay), error="no container for web-1 attempt 2"))
    assert answer is not None
    assert not answer.reply.ok
    assert answer.reply.error == "no container for web-1 attempt 2"


def test_an_answer_from_another_node_is_ignored_and_the_asker_still_waits() -> None:
    relay = LogRelay()
    request_id = ask(relay, node="n1")
    assert relay.answer(reply(request_id, node="n2", output="forged")) is None
    assert len(relay) == 1
    answer = relay.answer(reply(request_id, node="n1", output="real"))
    assert answer is not None and answer.reply.result == "real"


def test_an_unanswered_request_expires_with_the_node_named() -> None:
    relay = LogRelay(timeout=8)
    ask(relay, node="n1")
    assert relay.expire(107.0) == []
    (answer,) = relay.expire(108.0)
    assert not answer.reply.ok
    assert answer.reply.error is not None
    assert "worker n1 did not answer" in answer.reply.error and "within 8s" in answer.reply.error
    assert len(relay) == 0


def test_a_request_that_could_not_be_sent_is_forgotten() -> None:
    relay = LogRelay()
    relay.forget(ask(relay))
    assert len(relay) == 0
