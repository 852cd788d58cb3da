"""The manager's cost of keeping ended attempts' output, per attempt: decode the worker's
`KeptOutput` (64 KiB of stdout and 1 KiB of stderr, the worst a worker sends short of
escaped bytes), judge it (manager/kept_output.py) and write it to the store, committing
every `--batch` as the manager commits a batch of deliveries. Measured in-process, as CPU
seconds of this process (the database server's own, for PostgreSQL, apart).

    .venv/bin/python -m bench.kept_output [--attempts 2000] [--store URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from bench.report import emit, ms, progress
from manager import core, kept_output
from manager.store import Store
from shared.codec import decode, encode
from shared.messages import KEPT_OUTPUT_BYTES, KeptOutput, Result
from shared.models import TaskSpec

RESULT: TypeAdapter[object] = TypeAdapter(Result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=200, help="the attempts are theirs")
    parser.add_argument("--batch", type=int, default=50, help="deliveries a commit")
    parser.add_argument("--store", help="a store URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        store = Store(args.store or Path(directory) / "bench.db")
        now = datetime.now(UTC)
        spec = TaskSpec(name="job", image="busybox")
        for i in range(args.tasks):  # tasks with many attempts: the bound is exercised
            task = core.accept(spec, f"job-{i}", now).tasks[0]
            store.record(core.Decision(tasks=[task.model_copy(update={"attempt": 10**6})]))
        store.commit()
        stdout = ("x" * 79 + "\n") * (KEPT_OUTPUT_BYTES // 80)
        bodies = [
            encode(
                KeptOutput(
                    node="n1",
                    at=now,
                    task_id=f"job-{n % args.tasks}",
                    attempt=n // args.tasks + 1,
                    exit_code=1,
                    stdout=stdout,
                    stderr="error: the last words\n" * 40,
                )
            )
            for n in range(args.attempts)
        ]
        progress("keeping %d outputs of %d bytes each", len(bodies), len(bodies[0]))
        cpu, wall = time.process_time(), time.monotonic()
        for n, body in enumerate(bodies):
            sent = decode(RESULT, body, unique_keys=False)
            assert isinstance(sent, KeptOutput)
            store.begin_unit()
            kept = kept_output.accept(store.task(sent.task_id), sent)
            assert kept is not None and not isinstance(kept, str)
            store.keep_output(kept)
            store.keep_unit()
            if n % args.batch == args.batch - 1:
                store.commit()
        store.commit()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        store.close()
    emit(
        "kept-output",
        {
            "attempts": args.attempts,
            "body_bytes": len(bodies[0]),
            "store": "postgresql" if args.store else "sqlite",
            "cpu_ms_per_attempt": round(ms(cpu) / args.attempts, 3),
            "wall_ms_per_attempt": round(ms(wall) / args.attempts, 3),
        },
    )


if __name__ == "__main__":
    main()
