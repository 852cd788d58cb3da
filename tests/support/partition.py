"""A network partition between one process and the broker, on this host.

`Relay` forwards a port of its own to the broker; a worker given that port as its broker
reaches the broker only through it. `Partition` cuts that port off with an nftables
table of its own that drops every packet to or from it: established connections see no
reset and no error, only silence, and new ones get no answer, as across a cut link (TCP
retransmits with backoff, and the heal is found only when the next retransmit passes).
Only the relay's port is touched, never the broker's own.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


class Relay:
    """Forwards connections on a free loopback port to `target`, byte for byte."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def url(self, amqp_url: str) -> str:
        """The broker URL with its host and port replaced by the relay's."""
        parts = urlsplit(amqp_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass  # one side went away: close both
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Partition:
    """Drops all traffic to and from one loopback port while cut (an nftables table)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.table = f"kube_partitions_{port}"
        self.cut_now = False

    def cut(self) -> None:
        rules = (
            f"table inet {self.table} {{\n"
            "  chain input {\n"
            "    type filter hook input priority -10; policy accept;\n"
            f"    tcp dport {self.port} drop\n"
            f"    tcp sport {self.port} drop\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=10)
        self.cut_now = True

    def heal(self) -> None:
        if self.cut_now:
            subprocess.run(["nft", "delete", "table", "inet", self.table], check=True, timeout=10)
            self.cut_now = False


@contextlib.contextmanager
def relayed(target: tuple[str, int]) -> Iterator[tuple[Relay, Partition]]:
    """A relay to `target` and the partition of its port; both undone on the way out."""
    relay = Relay(target)
    partition = Partition(relay.port)
    try:
        yield relay, partition
    finally:
        partition.heal()
        relay.close()
