"""The test bed's network in the root namespace: a bridge, a namespace per host, NAT to the broker.

A bed `<id>` owns the bridge `kbr-<id>` with `10.231.<n>.1/24` (a /24 no route of this
machine covers), and per host a namespace `kube-<id>-<n>` joined to it by a veth pair:
`kv-<id>-<n>` in the root namespace, `eth0` inside with `.<n+1>`, loopback up and the
default route via the bridge. Every iptables rule of the bed carries the comment
`kube-hosts-<id>`, so a bed is removed by its id alone, also one left by a killed run.

RabbitMQ listens on 127.0.0.1 only, and is not ours to restart: a DNAT rule (with
route_localnet on the bridge) takes the bridge address's AMQP port to it, so the broker
sees each host's own address as the peer. Docker's FORWARD policy is DROP and bridged
traffic passes iptables here (br_netfilter), so one rule lets the bridge forward to itself;
another refuses what a host sends beyond the bridge, so hosts reach only the bed.
"""

from __future__ import annotations

import ipaddress
import json
import random
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")
BROKER_PORT = 5672


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command of the bed; a failure names the command and what it printed.

    In a session of its own: a Ctrl-C at the terminal reaches the tests, which remove the
    bed in order, and not a command halfway through."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, start_new_session=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def comment(bed_id: str) -> str:
    return f"kube-hosts-{bed_id}"


def bridge_name(bed_id: str) -> str:
    return f"kbr-{bed_id}"


def netns_name(bed_id: str, index: int) -> str:
    return f"kube-{bed_id}-{index}"


def veth_name(bed_id: str, index: int) -> str:
    return f"kv-{bed_id}-{index}"


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network a route or an address of the root namespace covers."""
    found = []
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            found.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(sh("ip", "-j", "-4", "addr").stdout or "[]"):
        for addr in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return [n for n in found if isinstance(n, ipaddress.IPv4Network)]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.231.0.0/16 that nothing here uses; the caller holds the beds' lock."""
    used = used_networks()
    candidates = list(SUBNETS.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {SUBNETS}")


@dataclass(frozen=True)
class Bridge:
    """The bed's bridge and its address: the root namespace's, where broker and manager are."""

    bed_id: str
    subnet: ipaddress.IPv4Network

    @property
    def name(self) -> str:
        return bridge_name(self.bed_id)

    @property
    def address(self) -> str:
        return str(self.subnet.network_address + 1)

    def host_address(self, index: int) -> str:
        return str(self.subnet.network_address + 1 + index)

    def create(self) -> None:
        tag = comment(self.bed_id)
        sh("ip", "link", "add", self.name, "type", "bridge")
        sh("ip", "addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.name)
        sh("ip", "link", "set", self.name, "up")
        sh("sysctl", "-q", "-w", f"net.ipv4.conf.{self.name}.route_localnet=1")
        sh("iptables", "-I", "FORWARD", "-i", self.name, "-o", self.name,
           "-m", "comment", "--comment", tag, "-j", "ACCEPT")  # fmt: skip
        # Nothing beyond the bridge: a host's DNS query or stray connection fails at once
        # instead of timing out (resolv.conf names the machine's resolver).
        sh("iptables", "-I", "FORWARD", "-i", self.name, "!", "-o", self.name,
           "-m", "comment", "--comment", tag, "-j", "REJECT",
           "--reject-with", "icmp-net-unreachable")  # fmt: skip
        sh("iptables", "-t", "nat", "-I", "PREROUTING", "-i", self.name, "-d", self.address,
           "-p", "tcp", "--dport", str(BROKER_PORT), "-m", "comment", "--comment", tag,
           "-j", "DNAT", "--to-destination", f"127.0.0.1:{BROKER_PORT}")  # fmt: skip

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace on the bridge with its own address; its name and the address."""
        netns, veth, address = (
            netns_name(self.bed_id, index),
            veth_name(self.bed_id, index),
            self.host_address(index),
        )
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "link", "set", veth, "master", self.name, "up")
        inside = ("ip", "-n", netns)
        sh(*inside, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        sh(*inside, "link", "set", "lo", "up")
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "route", "add", "default", "via", self.address)
        return netns, address


def set_link(bed_id: str, index: int, up: bool) -> None:
    """Bring a host's root-side veth up or down: down, its peer loses carrier, and nothing
    passes either way (no reset either: a peer sees silence, as across a real partition)."""
    sh("ip", "link", "set", veth_name(bed_id, index), "up" if up else "down")


def namespaces(bed_id: str) -> list[str]:
    prefix = f"kube-{bed_id}-"
    listed = sh("ip", "netns", "list").stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(prefix)]


def remove(bed_id: str) -> list[str]:
    """Remove the bed's namespaces (their veths go with them), bridge and rules; what failed."""
    problems = []
    for netns in namespaces(bed_id):
        if (done := sh("ip", "netns", "del", netns, check=False)).returncode:
            problems.append(f"ip netns del {netns}: {done.stderr.strip()}")
    bridge = bridge_name(bed_id)
    exists = sh("ip", "link", "show", bridge, check=False).returncode == 0
    if exists and (done := sh("ip", "link", "del", bridge, check=False)).returncode:
        problems.append(f"ip link del {bridge}: {done.stderr.strip()}")
    for table, chain in (("filter", "FORWARD"), ("nat", "PREROUTING")):
        for rule in sh("iptables", "-t", table, "-S", chain).stdout.splitlines():
            if f"--comment {comment(bed_id)}" in rule:
                args = shlex.split(rule)
                done = sh("iptables", "-t", table, "-D", *args[1:], check=False)
                if done.returncode:
                    problems.append(f"iptables -D {rule}: {done.stderr.strip()}")
    return problems
