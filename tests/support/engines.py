"""A Docker engine of its own in a host's network namespace, and what is left when one dies.

`dockerd` is started with `nsenter --net=` only: `ip netns exec` would also remount /sys,
and dockerd would lose its cgroups. Each engine keeps everything under its host's
directory (data root on the same ext4 as /tmp, so overlay2 works nested; exec root; pid
file; socket) and starts a containerd of its own under its exec root, so engines share
nothing with each other or with the machine's engine. Its containers' cgroups sit under
`/kube-hosts-<id>-<n>`, its iptables rules in its own namespace, and a published port
answers on the host's address (docker-proxy runs in the namespace), not on the root
namespace's 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from functools import partial
from pathlib import Path

from tests.support.network import NETNS_DIR, sh
from tests.support.waiting import wait_for

CGROUP_ROOT = Path("/sys/fs/cgroup")
STOP_TIMEOUT = 20.0  # seconds for dockerd to stop its containers and containerd


class Engine:
    """One dockerd in one namespace, its files under `root`."""

    def __init__(self, netns: str, root: Path, cgroup_parent: str) -> None:
        self.netns = netns
        self.root = root
        self.cgroup_parent = cgroup_parent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        """What DOCKER_HOST says for this engine."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start dockerd; ready() waits for it. Its own session: a Ctrl-C reaches the tests,
        which stop it in order, not dockerd itself."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - the child holds it
        with log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR / self.netns}", "dockerd",
                 "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.root / "docker.pid"), "--host", self.url,
                 "--storage-driver", "overlay2", "--cgroup-parent", self.cgroup_parent],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("docker", "--host", self.url, *args, check=check)

    def ready(self, timeout: float = 60) -> None:
        """Wait until the engine answers its socket; fail at once if dockerd exits."""
        deadline = time.monotonic() + timeout
        while not self.pings():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"dockerd in {self.netns} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd in {self.netns} did not answer in {timeout}s")
            time.sleep(0.05)

    def pings(self) -> bool:
        """Whether the engine answers GET /_ping on its socket (no docker CLI per try)."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                status_line = sock.recv(64).split(b"\r\n", 1)[0]  # HTTP/1.x 200 OK
                return status_line.split()[1:2] == [b"200"]
        except OSError:
            return False

    def load(self, archive: Path) -> None:
        self.docker("load", "--input", str(archive))

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def stop_engine(root: Path) -> list[str]:
    """Remove an engine's containers and stop its dockerd (by its pid file); what failed.

    Works on an engine this process started and on one a killed run left behind."""
    problems: list[str] = []
    socket, pidfile = root / "docker.sock", root / "docker.pid"
    if socket.exists():
        url = f"unix://{socket}"
        listed = sh("docker", "--host", url, "ps", "--all", "--quiet", check=False)
        if ids := listed.stdout.split():
            done = sh("docker", "--host", url, "rm", "--force", *ids, check=False)
            if done.returncode:
                problems.append(f"docker rm in {root}: {done.stderr.strip()}")
    if pidfile.exists():
        pid = int(pidfile.read_text().strip() or 0)
        if pid and signal_process(pid, signal.SIGTERM):
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # not a child of ours when left by a killed run: no wait()
            if alive(pid):
                problems.append(f"dockerd {pid} did not stop in {STOP_TIMEOUT}s; killed")
                signal_process(pid, signal.SIGKILL)
    return problems


def alive(pid: int) -> bool:
    """Whether the process runs: a zombie (our exited child, reaped later) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_process(pid: int, sig: signal.Signals) -> bool:
    """Send sig; False when the process is gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_namespace_processes(netns: str) -> list[int]:
    """SIGKILL every process in the network namespace (a worker, containerd, its shims,
    docker-proxy); the pids killed."""
    try:
        inode = (NETNS_DIR / netns).stat().st_ino
    except FileNotFoundError:
        return []
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns" / "net").stat().st_ino == inode:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # it ended meanwhile
    return killed


def remove_cgroups(parent: str) -> list[str]:
    """Kill what is left in the engine's cgroups (containers of a dockerd killed with -9)
    and remove them, deepest first; what could not be removed."""
    problems = []
    for controller in CGROUP_ROOT.iterdir():
        top = controller / parent
        if not top.is_dir():
            continue
        groups = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for group in [*groups, top]:
            procs = group / "cgroup.procs"
            pids = procs.read_text().split() if procs.exists() else []
            for pid in pids:
                signal_process(int(pid), signal.SIGKILL)
            try:
                wait_for(partial(empty, group), what=f"{group} to empty", timeout=10)
                group.rmdir()
            except (OSError, AssertionError) as exc:
                problems.append(f"cgroup {group}: {exc}")
    return problems


def empty(group: Path) -> bool:
    return not (group / "cgroup.procs").read_text().strip()


def unmount_under(root: Path) -> list[str]:
    """Unmount everything mounted under root (overlays, netns files, shm), deepest first."""
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    problems = []
    for point in sorted(set(mounts), key=len, reverse=True):
        done = sh("umount", "--lazy", point, check=False)
        if done.returncode:
            problems.append(f"umount {point}: {done.stderr.strip()}")
    return problems
