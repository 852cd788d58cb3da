"""Reading what kube left on the broker, with a non-pika client."""

from __future__ import annotations

import amqp


def dead_letters(url: str) -> list[dict[str, object]]:
    """Take every message off kube.dead-letters in the URL's vhost; return their headers."""
    vhost = url.rsplit("/", 1)[1]
    headers = []
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        while (message := channel.basic_get("kube.dead-letters", no_ack=True)) is not None:
            headers.append(dict(message.headers))
    return headers
