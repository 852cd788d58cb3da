"""The README's troubleshooting: each error it shows is the line the CLI prints, in that
situation, with the exit code the README gives."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Cluster
from tests.support.docblocks import block

pytestmark = pytest.mark.e2e

URL = re.compile(r"amqp://guest:\*\*\*@localhost:5672/[^:\s]+")


def shown(marker: str) -> str:
    (line,) = block("README.md", f"trouble: {marker}").splitlines()
    return line


def pattern(line: str) -> str:
    """The README's line as a regex: its URL, id, node and `(...)` stand for this run's."""
    text = re.escape(URL.sub("\0", line)).replace("\0", r"amqp://\S+")
    text = text.replace(re.escape("hello-1a2b3c4d"), r"hello-[0-9a-f]{8}")
    text = re.sub(r"myhost\\-1", r"\\S+", text)
    text = text.replace(re.escape("localhost:5672"), r"\S+:\d+")  # the broker the URL names
    for shown_vhost in ("'kube'", "add_vhost kube`", "-p kube "):  # this run's vhost
        text = text.replace(re.escape(shown_vhost), re.escape(shown_vhost).replace("kube", r"\S+?"))
    return text.replace(re.escape("(...)"), r"\(.*\)")


def kube(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube", *args],
        env={**os.environ, "KUBE_AMQP_URL": url, "KUBE_TIMEOUT": "5", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_broker() -> None:
    done = kube(f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F", "ps")
    assert done.returncode == 5
    assert re.fullmatch(pattern(shown("no-broker")), done.stderr.strip()), done.stderr


def test_wrong_password(vhost: str) -> None:
    done = kube(vhost.replace("guest:guest@", "guest:wrong@"), "ps")
    assert done.returncode == 5
    assert re.fullmatch(pattern(shown("wrong-password")), done.stderr.strip()), done.stderr


def test_no_vhost(vhost: str) -> None:
    done = kube(vhost + "-absent", "ps")
    assert done.returncode == 5
    assert re.fullmatch(pattern(shown("no-vhost")), done.stderr.strip()), done.stderr


def test_no_manager(vhost: str) -> None:
    done = kube(vhost, "ps")
    assert done.returncode == 3
    assert re.fullmatch(pattern(shown("no-manager")), done.stderr.strip()), done.stderr


def test_no_image_then_no_manager(cluster: Cluster) -> None:
    # an image no registry has (the README's `busybox`, on a machine without internet)
    image = "nonexistent.invalid/busybox"
    done = cluster.kube("run", "--name", "hello", "--image", image, "--wait", "--", "echo", "hi")
    assert done.returncode == 1, done.stdout + done.stderr
    expected = pattern(shown("no-image")).replace("busybox'", re.escape(image) + "'", 1)
    assert re.fullmatch(expected, done.stdout.splitlines()[-1]), done.stdout

    # and once the manager is gone, no manager answers
    cluster.stop("manager")
    done = cluster.kube("ps")
    assert done.returncode == 3
    assert re.fullmatch(pattern(shown("no-manager-now")), done.stderr.strip()), done.stderr
