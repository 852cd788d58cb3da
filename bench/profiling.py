"""Sampling profiles of running processes with py-spy, and a summary of where time goes.

`Profiler` attaches py-spy (non-blocking, so the target is never paused) to processes
for the length of a `with` block and writes, per process, a flame graph (`NAME.svg`) and
the collapsed stacks (`NAME.txt`). `python -m bench.profiling FILE.txt` summarises
collapsed stacks: the share of samples per thread, and the functions with the largest
inclusive and self share, idle time included (waiting on a socket is time too).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report import progress

_LINE = re.compile(r":\d+\)$")


class Profiler:
    """py-spy recording each (name, pid) while the block runs."""

    def __init__(self, outdir: Path, targets: Sequence[tuple[str, int]], rate: int = 100) -> None:
        self.outdir = outdir
        self.targets = list(targets)
        self.rate = rate
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.outdir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets:
            for fmt, suffix in (("raw", "txt"), ("flamegraph", "svg")):
                out = self.outdir / f"{name}.{suffix}"
                self._procs.append(
                    subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(self.rate),
                            "--format",
                            fmt,
                            "--output",
                            str(out),
                            "--threads",
                            "--idle",
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End every recording; py-spy writes its files when interrupted."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        progress("profiles in %s", self.outdir)


def _function(frame: str) -> str:
    """A frame without its line number, so a function's samples add up."""
    return _LINE.sub(")", frame.strip())


def summarise(path: Path, thread: str | None = None, top: int = 25) -> str:
    """A text table of the hottest functions in a py-spy collapsed-stack file."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        threads[frames[0]] += count
        if thread is not None and thread not in frames[0]:
            continue
        total += count
        functions = [_function(frame) for frame in frames[1:]]
        for function in set(functions):
            inclusive[function] += count
        if functions:
            own[functions[-1]] += count
    lines = [f"{path.name}: {sum(threads.values())} samples"]
    lines += [
        f"  {n / max(1, sum(threads.values())):6.1%}  {name}" for name, n in threads.most_common()
    ]
    scope = f"thread {thread!r}" if thread else "all threads"
    lines.append(f"inclusive, {scope} ({total} samples):")
    lines += [f"  {n / max(1, total):6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append(f"self, {scope}:")
    lines += [f"  {n / max(1, total):6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--thread", help="only stacks whose thread frame contains this")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.files:
        print(summarise(path, args.thread, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
