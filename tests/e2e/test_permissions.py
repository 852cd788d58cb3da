"""The least-privilege definitions in the real broker: each role may do its job and no more.

The definitions are made by `kube.definitions` (what `deploy/rabbitmq/definitions.json`
is, as `test_definitions.py` checks) for a fresh vhost, with user and node names of this
test's own, since users are global to the broker. Everything is deleted at teardown.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from kube.client import Client, make_spec
from kube.definitions import Plan, definitions
from manager.auth import WorkerAuth, result_sender_allowed
from shared import topology
from shared.bus import Bus, Delivery
from shared.codec import encode
from shared.errors import MessagingError, RequestError
from shared.messages import Heartbeat
from shared.sessions import EndReason, LogsParams
from shared.settings import Settings
from shared.states import TaskState
from tests.conftest import AMQP_HOST, Cluster, remove_node_containers
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

ACCESS_REFUSED = 403
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406


@dataclass(frozen=True)
class Broker:
    """A vhost loaded with the least-privilege definitions."""

    plan: Plan

    def url(self, user: str) -> str:
        return f"amqp://{user}:{self.plan.passwords[user]}@{AMQP_HOST}/{self.plan.vhost}"

    def channel(self, user: str) -> BlockingChannel:
        connection = pika.BlockingConnection(pika.URLParameters(self.url(user)))
        self._open.append(connection)
        channel = connection.channel()
        channel.confirm_delivery()
        return channel

    @property
    def _open(self) -> list[pika.BlockingConnection]:
        return _CONNECTIONS

    @property
    def manager(self) -> str:
        return self.plan.manager

    @property
    def client(self) -> str:
        return self.plan.client

    @property
    def operator(self) -> str:
        return self.plan.operator

    def worker(self, i: int) -> str:
        return self.plan.worker(self.plan.nodes[i])


_CONNECTIONS: list[pika.BlockingConnection] = []


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """One vhost and set of users for the module: no test changes what they allow."""
    tag = uuid.uuid4().hex[:6]
    nodes = (f"p{tag}-n1", f"p{tag}-n2")
    plan = Plan(
        vhost=f"kube-perm-{tag}",
        nodes=nodes,
        worker_prefix=f"p{tag}-kube-worker-",
        manager=f"p{tag}-kube-manager",
        client=f"p{tag}-kube-client",
        operator=f"p{tag}-kube-operator",
    )
    plan = Plan(**{**plan.__dict__, "passwords": {u: uuid.uuid4().hex for u in plan.users}})
    try:
        import_definitions(definitions(plan))
        broker = Broker(plan)
        wait_imported(broker)
        yield broker
    finally:
        close_connections()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", plan.vhost], capture_output=True)
        for user in plan.users:
            subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True)


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    close_connections()


def close_connections() -> None:
    while _CONNECTIONS:
        connection = _CONNECTIONS.pop()
        if connection.is_open:
            connection.close()


def import_definitions(data: dict[str, Any]) -> None:
    """Load definitions through stdin (the broker cannot read a test's private tmp dir)."""
    subprocess.run(
        ["rabbitmqctl", "-q", "import_definitions"],
        input=json.dumps(data).encode(),
        check=True,
        capture_output=True,
        timeout=60,
    )


def wait_imported(broker: Broker) -> None:
    """The import runs in the background: wait until the last user and queue are there."""
    last = broker.plan.nodes[-1]

    def ready() -> bool:
        channel = broker.channel(broker.worker(len(broker.plan.nodes) - 1))
        channel.queue_declare(topology.node_queue(last), passive=True)
        return True

    wait_for(ready, timeout=30, what="the definitions to be imported")


def refused(action: Callable[[], Any]) -> int:
    """The reply code with which the broker closed the channel over action."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        action()
    return int(caught.value.reply_code)


def publish(
    channel: BlockingChannel, exchange: str, key: str, body: bytes = b"{}", **props: Any
) -> None:
    channel.basic_publish(exchange, key, body, pika.BasicProperties(**props), mandatory=False)


# -- the client ------------------------------------------------------------------------


def test_a_client_may_submit_ask_and_watch(broker: Broker) -> None:
    channel = broker.channel(broker.client)
    # it may publish commands and queries, with direct reply-to
    channel.basic_consume("amq.rabbitmq.reply-to", lambda *_: None, auto_ack=True)
    publish(channel, topology.COMMANDS, "task.submit", reply_to="amq.rabbitmq.reply-to")
    publish(channel, topology.COMMANDS, "query.tasks", reply_to="amq.rabbitmq.reply-to")
    # and read events from the stream, from its end on
    follow_events(channel)


def follow_events(channel: BlockingChannel) -> None:
    """Read the events stream from its end on, as the Python client does."""
    channel.basic_qos(prefetch_count=10)
    channel.basic_consume(
        topology.EVENTS_STREAM, lambda *_: None, arguments={"x-stream-offset": "next"}
    )


@pytest.mark.parametrize("role", ["client", "operator"])
def test_neither_a_client_nor_an_operator_can_bind_events_into_commands(
    broker: Broker, role: str
) -> None:
    # given the client or the operator user, which may publish to kube.commands
    user = broker.client if role == "client" else broker.operator
    # when it binds kube.events into kube.commands (which would feed every event back in
    # as a command), then the broker refuses: it has read on no exchange
    channel = broker.channel(user)
    assert refused(lambda: channel.exchange_bind(topology.COMMANDS, topology.EVENTS, "#")) == (
        ACCESS_REFUSED
    )
    # nor through another exchange of its own, or a queue bound to kube.events
    channel = broker.channel(user)
    assert refused(lambda: channel.exchange_declare("amq.gen-relay", "topic")) == ACCESS_REFUSED
    if role == "client":
        channel = broker.channel(user)
        queue = channel.queue_declare("", exclusive=True).method.queue
        assert refused(lambda: channel.queue_bind(queue, topology.EVENTS, "#")) == ACCESS_REFUSED
    # and kube.commands still has the manager's bindings only
    manager = broker.channel(broker.manager)
    manager.exchange_declare(topology.COMMANDS, "topic", passive=True)
    assert not bindings_from(broker, topology.EVENTS, destination_type="exchange")


def bindings_from(broker: Broker, source: str, destination_type: str) -> list[str]:
    """The destinations bound to source in the test's vhost, of one type."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_bindings", "-p", broker.plan.vhost, "--no-table-headers"]
        + ["source_name", "destination_name", "destination_kind"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = [line.split("\t") for line in listed.stdout.splitlines() if line.strip()]
    return [row[1] for row in rows if row[0] == source and row[2] == destination_type]


@pytest.mark.parametrize("key", topology.OPERATOR_COMMAND_KEYS)
def test_a_client_cannot_cordon_uncordon_or_drain(broker: Broker, key: str) -> None:
    channel = broker.channel(broker.client)
    assert refused(lambda: publish(channel, topology.COMMANDS, key)) == ACCESS_REFUSED


def test_an_operator_may_act_on_nodes_and_ask_but_not_submit(broker: Broker) -> None:
    channel = broker.channel(broker.operator)
    channel.basic_consume("amq.rabbitmq.reply-to", lambda *_: None, auto_ack=True)
    for key in (*topology.OPERATOR_COMMAND_KEYS, "query.nodes"):
        publish(channel, topology.COMMANDS, key, reply_to="amq.rabbitmq.reply-to")
    follow_events(channel)
    for key in topology.CLIENT_COMMAND_KEYS:
        other = broker.channel(broker.operator)
        assert refused(lambda: publish(other, topology.COMMANDS, key)) == ACCESS_REFUSED  # noqa: B023


def test_a_client_cannot_publish_to_a_node_queue(broker: Broker) -> None:
    node = broker.plan.nodes[0]
    assert refused(lambda: publish(broker.channel(broker.client), topology.DISPATCH, node)) == (
        ACCESS_REFUSED
    )
    # not through the default exchange either
    via_default = broker.channel(broker.client)
    assert refused(lambda: publish(via_default, "", topology.node_queue(node))) == ACCESS_REFUSED
    # nor may it send results, or commands under other routing keys
    assert (
        refused(
            lambda: publish(
                broker.channel(broker.client), topology.RESULTS, f"result.update.{node}"
            )
        )
        == ACCESS_REFUSED
    )
    assert (
        refused(lambda: publish(broker.channel(broker.client), topology.COMMANDS, "admin.wipe"))
        == ACCESS_REFUSED
    )


def test_a_client_cannot_read_or_eavesdrop(broker: Broker) -> None:
    node = broker.plan.nodes[0]
    for queue in (topology.COMMANDS_QUEUE, topology.node_queue(node)):
        channel = broker.channel(broker.client)
        assert refused(lambda: channel.basic_get(queue)) == ACCESS_REFUSED  # noqa: B023
    # binding its own queue to the dispatch exchange would copy a node's tasks
    channel = broker.channel(broker.client)
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert refused(lambda: channel.queue_bind(queue, topology.DISPATCH, node)) == ACCESS_REFUSED
    # and another client's reply queue is its own (exclusive)
    other = broker.channel(broker.client)
    theirs = other.queue_declare("", exclusive=True).method.queue
    mine = broker.channel(broker.client)
    assert refused(lambda: mine.basic_consume(theirs, lambda *_: None)) == RESOURCE_LOCKED


@pytest.mark.parametrize("role", ["client", "worker"])
def test_neither_a_client_nor_a_worker_can_declare_or_delete_the_topology(
    broker: Broker, role: str
) -> None:
    user = broker.client if role == "client" else broker.worker(0)
    node_queue = topology.node_queue(broker.plan.nodes[0])
    actions: list[Callable[[BlockingChannel], Any]] = [
        lambda ch: ch.exchange_declare(topology.COMMANDS, "topic", durable=True),
        lambda ch: ch.exchange_declare("kube.evil", "fanout"),
        lambda ch: ch.exchange_delete(topology.COMMANDS),
        lambda ch: ch.exchange_delete(topology.DISPATCH),
        lambda ch: ch.queue_declare(topology.COMMANDS_QUEUE, durable=True),
        lambda ch: ch.queue_delete(topology.RESULTS_QUEUE),
        lambda ch: ch.queue_delete(node_queue),  # not even a worker its own
        lambda ch: ch.queue_purge(topology.COMMANDS_QUEUE),
    ]
    for action in actions:
        channel = broker.channel(user)
        assert refused(lambda: action(channel)) == ACCESS_REFUSED  # noqa: B023
    # and the topology is all still there
    check = broker.channel(broker.manager)
    check.exchange_declare(topology.COMMANDS, "topic", passive=True)
    check.queue_declare(node_queue, passive=True)


# -- the workers -----------------------------------------------------------------------


def test_a_worker_reads_its_own_queue_and_no_other(broker: Broker) -> None:
    mine, theirs = (topology.node_queue(node) for node in broker.plan.nodes)
    channel = broker.channel(broker.worker(0))
    channel.basic_consume(mine, lambda *_: None)
    # it may not declare a queue of its own (it needs none: answers go to kube.results)
    other = broker.channel(broker.worker(0))
    assert refused(lambda: other.queue_declare("", exclusive=True)) == ACCESS_REFUSED
    other = broker.channel(broker.worker(0))
    assert refused(lambda: other.basic_consume(theirs, lambda *_: None)) == ACCESS_REFUSED
    other = broker.channel(broker.worker(0))
    assert refused(lambda: other.basic_get(topology.COMMANDS_QUEUE)) == ACCESS_REFUSED


def test_a_worker_publishes_only_its_own_results(broker: Broker) -> None:
    node, other_node = broker.plan.nodes
    channel = broker.channel(broker.worker(0))
    publish(channel, topology.RESULTS, topology.result_key("heartbeat", node))
    publish(channel, topology.RESULTS, topology.result_key("update", node))
    publish(channel, topology.RESULTS, topology.result_key("output", node))  # kept output
    # not as another node (topic permissions on kube.results)
    for kind in ("update", "output"):
        assert (
            refused(
                lambda: publish(
                    broker.channel(broker.worker(0)),
                    topology.RESULTS,
                    topology.result_key(kind, other_node),  # noqa: B023
                )
            )
            == ACCESS_REFUSED
        )
    # no dispatches, no commands, nothing through the default exchange
    for exchange, key in (
        (topology.DISPATCH, other_node),
        (topology.COMMANDS, "task.submit"),
        ("", topology.node_queue(other_node)),
        (topology.DEAD_LETTER, ""),
    ):
        channel = broker.channel(broker.worker(0))
        assert refused(lambda: publish(channel, exchange, key)) == ACCESS_REFUSED  # noqa: B023


def test_results_carry_the_validated_user_and_the_manager_check_uses_it(broker: Broker) -> None:
    # given the manager consuming results, and a worker publishing through kube's Bus
    node, other_node = broker.plan.nodes
    got: list[Delivery] = []
    manager = Bus(Settings(amqp_url=broker.url(broker.manager)), "test-manager")
    manager.declare(topology.manager_topology())  # same arguments as the definitions
    broker.channel(broker.manager).queue_purge(topology.RESULTS_QUEUE)  # earlier tests' results
    manager.consume(topology.RESULTS_QUEUE, lambda d: (got.append(d), manager.ack(d)))
    manager.connect()
    worker = Bus(Settings(amqp_url=broker.url(broker.worker(0))), "test-worker")
    worker.connect()
    try:
        # when it publishes a result with user_id set to its user
        assert worker.user == broker.worker(0)
        worker.publish(
            topology.RESULTS, topology.result_key("heartbeat", node), b"{}", user_id=worker.user
        )
        wait_for(lambda: manager.process_events(0.1) or got, timeout=10, what="the result")
        # then the manager sees the user, and the check passes for its node only
        assert got[0].user_id == broker.worker(0)
        auth = WorkerAuth(
            user_prefix=broker.plan.worker_prefix, trusted_users=frozenset({broker.manager})
        )
        assert result_sender_allowed(got[0].user_id, node, auth) is None
        assert result_sender_allowed(got[0].user_id, other_node, auth) is not None
        assert result_sender_allowed(broker.client, node, auth) is not None
    finally:
        worker.close()
        manager.close()
    # and a forged user_id is refused by the broker itself
    forged = broker.channel(broker.worker(0))
    assert (
        refused(
            lambda: publish(
                forged,
                topology.RESULTS,
                topology.result_key("heartbeat", node),
                user_id=broker.worker(1),
            )
        )
        == PRECONDITION_FAILED
    )


def test_the_manager_may_run_its_topology_and_reply(broker: Broker) -> None:
    # the manager re-declares what the definitions made (a mismatch would close it)
    channel = broker.channel(broker.manager)
    for exchange in topology.EXCHANGES.exchanges:
        channel.exchange_declare(exchange.name, exchange.type, durable=True)
    for node in broker.plan.nodes:
        for queue in topology.node_topology(node).queues:
            channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
    # it dispatches, and answers a client's direct reply-to
    publish(channel, topology.DISPATCH, broker.plan.nodes[0])
    client = broker.channel(broker.client)
    answers: list[bytes] = []
    client.basic_consume(
        "amq.rabbitmq.reply-to", lambda c, m, p, body: answers.append(body), auto_ack=True
    )
    channel.queue_purge(topology.QUERIES_QUEUE)  # earlier tests' queries
    publish(client, topology.COMMANDS, "query.tasks", reply_to="amq.rabbitmq.reply-to")
    request = channel.basic_get(topology.QUERIES_QUEUE, auto_ack=True)
    assert request[0] is not None
    publish(channel, "", request[1].reply_to, b'{"ok": true}')
    wait_for(
        lambda: client.connection.process_data_events(0.1) or answers, timeout=10, what="reply"
    )
    assert answers == [b'{"ok": true}']


# -- the real processes ----------------------------------------------------------------


def test_a_cluster_runs_with_least_privilege_users(
    broker: Broker,
    tmp_path: Path,
    busybox_image: str,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a manager and two workers, each logged in as its own least-privilege user
    monkeypatch.setenv("KUBE_WORKER_USER_PREFIX", broker.plan.worker_prefix)
    processes = [Cluster(broker.url(broker.manager), tmp_path, [])]
    processes[0].start_manager()
    for i, node in enumerate(broker.plan.nodes):
        worker = Cluster(broker.url(broker.worker(i)), tmp_path, [node])
        worker.start_worker(node)
        processes.append(worker)
    try:
        with Client(Settings(amqp_url=broker.url(broker.client), request_timeout=5)) as client:
            # then both workers join, and a client-user's task runs
            wait_for(
                lambda: len([n for n in client.nodes() if n.status.value == "ready"]) == 2,
                timeout=20,
                what="two ready workers",
            )
            spec = {"name": "lp", "image": busybox_image, "pull_policy": "never"}
            command = ["sh", "-c", "echo hello from lp; sleep 300"]
            task_id = client.submit(make_spec({**spec, "command": command}))
            task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
            assert task.state == TaskState.RUNNING, task.error
            # and its logs come back, relayed by the manager (a worker may not reply itself)
            wait_for(lambda: "hello from lp" in client.logs(task_id), timeout=20, what="the logs")
            # and followed: the worker streams on its own result key, the manager relays
            with client.sessions() as sessions:
                sessions.open(task_id, logs=LogsParams(follow=False))
                text, end, deadline = "", None, time.monotonic() + 30
                while end is None and time.monotonic() < deadline:
                    for received in sessions.read(timeout=1):
                        text += "".join(chunk.data for chunk in received.frame.chunks)
                        end = end or received.frame.end
            assert text == "hello from lp\n" and end.reason == EndReason.DONE, (text, end)
    finally:
        for process in processes:
            for name in list(process.procs):
                process.stop(name)
        for node in broker.plan.nodes:
            remove_node_containers(docker_client, node)


def start_manager_and_worker_bus(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Cluster, Bus]:
    """A real manager as kube-manager, knowing the test's worker users, and a connected Bus
    of the first worker's user; the caller stops both."""
    monkeypatch.setenv("KUBE_WORKER_USER_PREFIX", broker.plan.worker_prefix)
    # (heartbeats a previous test's workers left in this module's vhost would add nodes)
    broker.channel(broker.manager).queue_purge(topology.RESULTS_QUEUE)
    manager = Cluster(broker.url(broker.manager), tmp_path, [])
    manager.start_manager()
    worker = Bus(Settings(amqp_url=broker.url(broker.worker(0))), "test-worker")
    try:
        worker.connect()
    except BaseException:
        manager.stop("manager")
        raise
    return manager, worker


def test_the_manager_refuses_results_a_worker_sends_for_another_node(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a real manager logged in as kube-manager, knowing this test's worker users
    node, other_node = broker.plan.nodes
    manager, worker = start_manager_and_worker_bus(broker, tmp_path, monkeypatch)
    try:
        with Client(Settings(amqp_url=broker.url(broker.client), request_timeout=5)) as client:
            wait_for(lambda: client.list() is not None, timeout=30, what="the manager")

            def beat(about: str, user_id: str | None) -> None:
                body = encode(
                    Heartbeat(node=about, at=datetime.now(UTC), cpus=1, memory=2**30, disk=2**30)
                )
                key = topology.result_key("heartbeat", node)  # the only key it may use
                worker.publish(topology.RESULTS, key, body, user_id=user_id)

            # when worker n1 reports as n2, and without user_id, then as itself
            beat(other_node, worker.user)
            beat(node, None)
            beat(node, worker.user)
            # then only its honest heartbeat counts
            wait_for(lambda: node in [n.name for n in client.nodes()], timeout=15, what="the node")
            assert [n.name for n in client.nodes()] == [node]
        # and the refused ones wait in the dead-letter queue, saying why
        channel = broker.channel(broker.manager)
        reasons = []
        while (got := channel.basic_get(topology.DEAD_LETTER_QUEUE, auto_ack=True))[0]:
            if got[1].headers.get("x-kube-queue") == topology.RESULTS_QUEUE:  # not other tests'
                reasons.append(got[1].headers[topology.REASON_HEADER])
        assert len(reasons) == 2, reasons
        assert other_node in reasons[0] and "user_id" in reasons[1]
    finally:
        worker.close()
        manager.stop("manager")


def test_the_manager_takes_node_commands_from_its_operator_users_only(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a real manager whose operator is this test's operator user, and a node it knows
    node = broker.plan.nodes[0]
    monkeypatch.setenv("KUBE_OPERATOR_USERS", broker.operator)
    manager, worker = start_manager_and_worker_bus(broker, tmp_path, monkeypatch)
    try:
        with (
            Client(Settings(amqp_url=broker.url(broker.operator), request_timeout=5)) as operator,
            Client(Settings(amqp_url=broker.url(broker.client), request_timeout=5)) as client,
        ):
            wait_for(lambda: operator.nodes() is not None, timeout=30, what="the manager")
            beat = Heartbeat(node=node, at=datetime.now(UTC), cpus=1, memory=2**30, disk=2**30)
            key = topology.result_key("heartbeat", node)
            worker.publish(topology.RESULTS, key, encode(beat), user_id=worker.user)
            wait_for(lambda: [n for n in operator.nodes() if n.name == node], what="the node")

            # when the operator cordons the node, then it is cordoned, and uncordoned again
            operator.cordon(node)
            assert [n.schedulable for n in operator.nodes() if n.name == node] == [False]
            operator.uncordon(node)
            assert [n.schedulable for n in client.nodes() if n.name == node] == [True]

            # when the client user drains it, then the broker refuses (topic permissions)
            with pytest.raises(MessagingError, match="ACCESS_REFUSED"):
                client.drain(node)

            # and a manager that does not count that user among its operators refuses it too
            manager.stop("manager")
            monkeypatch.setenv("KUBE_OPERATOR_USERS", "someone-else")
            manager.start_manager()
            wait_for(lambda: operator.nodes() is not None, timeout=30, what="the manager")
            with pytest.raises(RequestError, match=f"user '{broker.operator}' may not send"):
                operator.drain(node)
            assert [n.schedulable for n in client.nodes() if n.name == node] == [True]
    finally:
        worker.close()
        if "manager" in manager.procs:
            manager.stop("manager")
