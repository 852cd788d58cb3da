"""The worker's reading of an ended attempt's output for the manager to keep
(worker/attempt_output.py)."""

from __future__ import annotations

from shared.codec import encode
from shared.errors import RuntimeFailure
from shared.messages import KEPT_OUTPUT_BYTES, KeptOutput
from shared.wire import MAX_BODY_BYTES
from worker.attempt_output import OutputKeeper, kept_output


def test_the_end_of_a_large_output_is_kept_and_fits_a_message() -> None:
    # given an output of control bytes (six bytes each once JSON-escaped) and NULs
    data = b"start\n" + b"\x01\x00" * KEPT_OUTPUT_BYTES + b"end\n"
    kept = kept_output("n1", ("t1", 2), 3, data, data)
    # then the last 64 KiB of each stream are kept, the cut said, NUL made readable, and
    # the message fits
    assert kept.cut and kept.stdout.endswith("end\n") and "\x00" not in kept.stdout
    assert len(kept.stdout) == len(kept.stderr) == KEPT_OUTPUT_BYTES
    assert len(encode(kept)) < MAX_BODY_BYTES
    assert (kept.task_id, kept.attempt, kept.exit_code) == ("t1", 2, 3)


def test_a_small_output_is_kept_whole() -> None:
    kept = kept_output("n1", ("t1", 1), None, "héllo\n".encode(), b"oops\n")
    assert (kept.stdout, kept.stderr, kept.cut) == ("héllo\n", "oops\n", False)


class Engine:
    """Containers' outputs by key; reads are counted (a stand-in for Runtime.output_end)."""

    def __init__(self) -> None:
        self.outputs: dict[tuple[str, int], bytes] = {}
        self.reads = 0

    def output_end(self, task_id: str, attempt: int, limit: int) -> tuple[bytes, bytes]:
        self.reads += 1
        if (task_id, attempt) not in self.outputs:
            raise RuntimeFailure(f"no container of {task_id} attempt {attempt}")
        return self.outputs[(task_id, attempt)][-limit:], b""


def test_an_exit_read_is_not_read_again_at_removal() -> None:
    engine, sent = Engine(), list[KeptOutput]()
    keeper = OutputKeeper("n1", engine.output_end, sent.append)
    engine.outputs[("t1", 1)] = b"bye\n"
    # when the container exits, then is removed
    keeper.exited(("t1", 1), 3)
    keeper.removing(("t1", 1))
    keeper.removed(("t1", 1))
    # then it was read and sent once, with its exit code
    assert engine.reads == 1 and [(k.stdout, k.exit_code) for k in sent] == [("bye\n", 3)]


def test_a_stopped_container_is_read_before_its_removal() -> None:
    engine, sent = Engine(), list[KeptOutput]()
    keeper = OutputKeeper("n1", engine.output_end, sent.append)
    engine.outputs[("t1", 1)] = b"serving\n"
    keeper.removing(("t1", 1))
    assert [(k.stdout, k.exit_code) for k in sent] == [("serving\n", None)]


def test_a_container_gone_already_sends_nothing_and_raises_nothing() -> None:
    engine, sent = Engine(), list[KeptOutput]()
    keeper = OutputKeeper("n1", engine.output_end, sent.append)
    keeper.exited(("t1", 1), 3)
    keeper.removing(("t1", 1))
    assert sent == [] and engine.reads == 2
