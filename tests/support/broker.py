"""Reading what kube left on the broker, with a non-pika client."""

from __future__ import annotations

import subprocess

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


def queues(url: str, prefix: str) -> list[str]:
    """The queues of the URL's vhost whose names start with prefix, sorted."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", url.rsplit("/", 1)[1], "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return sorted(name for name in out.split() if name.startswith(prefix))


def watch_queues(url: str) -> list[str]:
    """The server-named queues of the URL's vhost: a watcher's temporary queue is one."""
    return queues(url, "amq.gen-")


def stream_readers(url: str) -> int:
    """How many consumers read the events stream in the URL's vhost (a follower is one).

    Counted by list_queues: RabbitMQ 3.10's list_consumers leaves out a stream's.
    """
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", url.rsplit("/", 1)[1], "name", "consumers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    rows = (line.split() for line in out.splitlines())
    return sum(int(row[1]) for row in rows if len(row) == 2 and row[0] == "kube.events.stream")


def consumers(url: str, queue: str) -> int:
    """How many consumers a queue of the URL's vhost has now."""
    vhost = url.rsplit("/", 1)[1]
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        _, _, count = connection.channel().queue_declare(queue, passive=True)
    return int(count)


def dead_letter_bodies(url: str) -> list[bytes]:
    """The bodies on kube.dead-letters in the URL's vhost, left there (requeued)."""
    vhost = url.rsplit("/", 1)[1]
    bodies = []
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        while (message := channel.basic_get("kube.dead-letters", no_ack=False)) is not None:
            bodies.append(bytes(message.body) + repr(message.headers).encode())
    return bodies  # the channel closes unacked: the broker requeues them


def stream_bodies(url: str, idle: float = 1.0) -> list[bytes]:
    """Every message the events stream of the URL's vhost holds, from its first."""
    vhost = url.rsplit("/", 1)[1]
    bodies: list[bytes] = []
    with amqp.Connection(host="127.0.0.1:5672", virtual_host=vhost) as connection:
        channel = connection.channel()
        channel.basic_qos(0, 500, False)

        def take(message: amqp.Message) -> None:
            bodies.append(bytes(message.body))
            channel.basic_ack(message.delivery_tag)

        channel.basic_consume(
            "kube.events.stream", callback=take, arguments={"x-stream-offset": "first"}
        )
        while True:
            try:
                connection.drain_events(timeout=idle)
            except TimeoutError:
                return bodies
