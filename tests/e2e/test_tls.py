"""amqps:// for real: a second RabbitMQ node with a TLS listener and a CA made here.

The shared broker on 5672 is left alone: this test starts a node of its own (own node
name, ports, data and log directories, no plugins), generates a CA and a server
certificate for `localhost` with openssl, and stops the node at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.bus import Bus, Delivery
from shared.errors import MessagingError
from shared.rpc import RpcChannel
from shared.settings import Settings
from shared.topology import COMMANDS, EXCHANGES, Binding, Queue, Topology
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")


@dataclass(frozen=True)
class TlsBroker:
    port: int
    ca: Path
    other_ca: Path

    def url(self, host: str = "localhost") -> str:
        return f"amqps://guest:guest@{host}:{self.port}/%2F"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=kube test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def make_server_cert(directory: Path) -> None:
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    if os.geteuid() != 0 or not SERVER.exists() or shutil.which("openssl") is None:
        pytest.skip("needs root, RabbitMQ's own scripts and openssl to start a second node")
    home = tmp_path_factory.mktemp("tls")
    make_ca(home, "ca")
    make_ca(home, "other")
    make_server_cert(home)
    port, dist = free_port(), free_port()
    (home / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        f"ssl_options.cacertfile = {home / 'ca.pem'}\n"
        f"ssl_options.certfile = {home / 'server.pem'}\n"
        f"ssl_options.keyfile = {home / 'server.key'}\n"
        "ssl_options.verify = verify_none\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
    )
    (home / "enabled_plugins").write_text("[].\n")  # the shared node's plugins own their ports
    node = f"kube-tls-{uuid.uuid4().hex[:6]}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
    }
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen(
            [str(SERVER)], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    broker = TlsBroker(port, home / "ca.pem", home / "other.pem")

    def serving() -> bool:
        log = (home / "node.log").read_text()[-2000:]
        assert proc.poll() is None, f"the TLS node exited:\n{log}"
        RpcChannel(Settings(amqp_url=broker.url(), ca_file=str(broker.ca))).close()
        return True

    try:
        wait_for(serving, timeout=90, interval=0.5, what="the TLS node")
        yield broker
    finally:
        subprocess.run([str(CTL), "-n", node, "stop"], env=env, capture_output=True, timeout=60)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_a_client_connects_over_tls_with_the_ca(tls_broker: TlsBroker) -> None:
    settings = Settings(amqp_url=tls_broker.url(), ca_file=str(tls_broker.ca))
    with RpcChannel(settings) as channel:
        channel.watch("amq.topic", ["#"])  # a round trip on the connection


@pytest.mark.parametrize(
    ("host", "ca", "why"),
    [
        ("localhost", None, "the system CAs do not know ours"),
        ("localhost", "other", "another CA"),
        ("127.0.0.1", "ca", "the certificate names localhost only"),
    ],
)
def test_tls_is_refused_without_the_right_ca_or_name(
    tls_broker: TlsBroker, host: str, ca: str | None, why: str
) -> None:
    ca_file = {"ca": tls_broker.ca, "other": tls_broker.other_ca}.get(ca or "")
    settings = Settings(amqp_url=tls_broker.url(host), ca_file=str(ca_file) if ca_file else None)
    with pytest.raises(MessagingError, match="SSLCertVerificationError"):
        RpcChannel(settings)


def test_the_services_bus_publishes_and_consumes_over_tls(tls_broker: TlsBroker) -> None:
    # given the bus the manager and workers use, on amqps://
    bus = Bus(Settings(amqp_url=tls_broker.url(), ca_file=str(tls_broker.ca)), "tls-test")
    work = Topology(
        queues=(Queue("tls.work", arguments={"x-queue-type": "quorum"}),),
        bindings=(Binding("tls.work", COMMANDS, "tls.#"),),
    )
    bus.declare(EXCHANGES + work)
    got: list[Delivery] = []
    bus.consume("tls.work", lambda d: (got.append(d), bus.ack(d)))
    runner = threading.Thread(target=bus.run, daemon=True)
    runner.start()
    try:
        # when it publishes with a confirm
        bus.call_threadsafe(lambda: bus.publish(COMMANDS, "tls.one", b"over tls"))
        # then the message comes back through the TLS connection
        wait_for(lambda: got, timeout=10, what="the delivery")
        assert got[0].body == b"over tls"
    finally:
        bus.close()
