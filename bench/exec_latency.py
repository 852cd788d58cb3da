"""Keystroke echo through `kube exec -it`: the time from a key typed to its echo on screen.

    python -m bench.exec_latency [--keys 200] [--gap 0.02]

A throwaway cluster (a manager and one worker with --allow-exec, on the Docker engine)
runs a busybox task; `kube exec -it TASK -- cat` runs on a pseudo-terminal of its own
(bench/pty_command.py). Each key goes client -> manager -> worker -> the container's pty,
whose echo comes back worker -> manager -> client -> screen. Keys are typed one at a time,
`--gap` seconds apart, as a person types. Prints one JSON line: p50, p99, mean and max in
milliseconds, with the machine's load average (bench/report.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from bench.cluster import Cluster, exit_on_sigterm
from bench.pty_command import PtyCommand
from bench.report import emit, ms, percentile, progress

IMAGE = "localhost/kube-busybox:latest"
KEYS = b"abcdefghijklmnopqrstuvwxyz0123456789"


def start_task(cluster: Cluster) -> str:
    """A task that runs until stopped, running; its id."""
    from kube.client import Client, make_spec
    from shared.settings import Settings
    from shared.states import TaskState

    spec = make_spec(
        {
            "name": "exec-bench",
            "image": IMAGE,
            "pull_policy": "never",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        }
    )
    with Client(Settings(amqp_url=cluster.url, request_timeout=10)) as client:
        task_id = client.submit(spec)
        task = client.wait(task_id, {TaskState.RUNNING}, timeout=60)
    if task.state is not TaskState.RUNNING:
        raise RuntimeError(f"the task is {task.state.value}: {task.error}")
    return task_id


def measure(cluster: Cluster, task_id: str, keys: int, gap: float) -> list[float]:
    """Seconds from each key written to its echo read, through a real pty."""
    argv = [sys.executable, "-m", "kube", "exec", "-it", task_id, "--", "cat"]
    terminal = PtyCommand(argv, cluster.env)
    try:
        # Until kube makes its terminal raw, the local line discipline echoes: wait for
        # that, then for a first echo, which says the session runs (not measured).
        terminal.wait_raw(timeout=30)
        terminal.write(b"!")
        end = terminal.read_until(b"!", timeout=30)
        samples = []
        for number in range(keys):
            key = KEYS[number % len(KEYS) : number % len(KEYS) + 1]
            time.sleep(gap)
            started = time.perf_counter()
            terminal.write(key)
            end = terminal.read_until(key, timeout=10, start=end)
            samples.append(time.perf_counter() - started)
        terminal.write(b"\x04")  # Ctrl-D on an empty line: cat ends, and so does kube
        terminal.write(b"\r\x04")
        code = terminal.wait(timeout=20)
        if code != 0:
            progress("kube exec ended with %d", code)
        return samples
    finally:
        terminal.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between keys")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with Cluster() as cluster:
        node = cluster.node(1)
        cluster.start_manager()
        cluster.start_worker(node, "docker", "--allow-exec")
        cluster.wait_ready([node])
        task_id = start_task(cluster)
        progress("typing %d keys into kube exec -it %s -- cat", args.keys, task_id)
        samples = measure(cluster, task_id, args.keys, args.gap)
    emit(
        "exec_latency",
        {
            "keys": len(samples),
            "gap_ms": ms(args.gap),
            "echo_p50_ms": ms(percentile(samples, 50)),
            "echo_p99_ms": ms(percentile(samples, 99)),
            "echo_mean_ms": ms(statistics.fmean(samples)) if samples else None,
            "echo_max_ms": ms(max(samples)) if samples else None,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
