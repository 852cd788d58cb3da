"""The bus's edge without a broker: pika's errors become ours, acks are batched right."""

from __future__ import annotations

import pika.exceptions
import pytest

from shared.bus import Bus
from shared.bus.acks import ack_frames
from shared.bus.connection import translated
from shared.errors import ConnectionLost, MessagingError, UnroutableError
from shared.settings import Settings

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/%2F"


def test_publishing_before_a_connection_is_connection_lost_not_a_pika_error() -> None:
    # given a bus that never connected
    bus = Bus(Settings(amqp_url=UNREACHABLE), "test-edge")
    # when it publishes, one message or a batch, then the error is ours
    with pytest.raises(ConnectionLost, match="not connected"):
        bus.publish("kube.commands", "x", b"{}")
    with pytest.raises(ConnectionLost, match="not connected"):
        bus.publish_batch([bus.message("kube.commands", "x", b"{}")])


@pytest.mark.parametrize(
    "error",
    [
        pika.exceptions.AMQPConnectionError("refused"),
        pika.exceptions.StreamLostError("lost"),
        pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED"),
        pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED"),
        ConnectionResetError("reset"),
    ],
)
def test_a_lost_connection_or_channel_becomes_connection_lost(error: Exception) -> None:
    # given pika failing as a connection or channel dies; when it passes the edge
    with pytest.raises(ConnectionLost) as caught, translated("doing it"):
        raise error
    # then it is ours, says what was being done, and keeps pika's error as its cause
    assert "doing it" in str(caught.value) and caught.value.__cause__ is error


def test_other_pika_errors_become_messaging_errors_and_ours_pass_unchanged() -> None:
    with pytest.raises(MessagingError) as caught, translated("reading"):
        raise pika.exceptions.ProtocolSyntaxError("garbled")
    assert not isinstance(caught.value, ConnectionLost)
    with pytest.raises(UnroutableError), translated("publishing"):
        raise UnroutableError("no queue")


def test_each_delivery_is_acked_on_its_own_never_with_multiple() -> None:
    # given deliveries 3 and 4 handed to us, and 5..51 received by pika but not yet handed
    # to the consumer (in no set of ours); when 3 and 4 are acked
    frames = ack_frames([3, 4], {3, 4})
    # then each alone: a multiple ack of 4 would settle nothing more here, but one of a
    # later tag would settle the deliveries nobody handled yet
    assert frames == [(3, False), (4, False)]
    assert all(not multiple for _, multiple in ack_frames([1, 2, 4], {1, 2, 3, 4, 5}))
