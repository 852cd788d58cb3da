"""Examples of docs/ that run a task, run as written against a real cluster (with the
local busybox image for `busybox`: no registry answers on the test machines)."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import Cluster
from tests.support.docblocks import block

pytestmark = pytest.mark.e2e


def test_the_endpoints_example_of_docs_nodes_prints_where_the_task_answers(
    cluster: Cluster, busybox_image: str
) -> None:
    # given the example: a command (continued on a second line), then what it prints
    text = block("docs/nodes.md", "example: endpoints-run").replace("\\\n", " ")
    command, *shown = text.splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[:2] == ["kube", "run"]
    argv[argv.index("busybox")] = busybox_image
    # when it runs
    done = cluster.kube(*argv[1:])
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    # then it printed the id, then where the task runs and where its port answers
    task_id = done.stdout.splitlines()[0]
    assert re.fullmatch(r"web-[0-9a-f]{8}", task_id)
    nodes = "|".join(map(re.escape, cluster.nodes))
    expected = [
        re.escape(line)
        .replace("web\\-1a2b3c4d", task_id)
        .replace("node\\-1", f"(?:{nodes})")
        .replace(re.escape("10.0.0.2:32768"), r"[0-9.]+:\d+")
        for line in shown
    ]
    got = done.stdout.splitlines()
    assert len(got) == len(expected), done.stdout
    for pattern, line in zip(expected, got, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)
