"""The JSON examples of docs/ are what kube takes."""

from __future__ import annotations

import json

from shared.models import TaskRecord
from shared.placement import Unplaced
from shared.sessions import Fd, StreamFrame
from shared.specs import TaskSpec
from tests.support.docblocks import block


def test_both_forms_of_constraints_in_docs_scheduling_make_a_spec() -> None:
    text = block("docs/scheduling.md", "example: constraints")
    decoder, at, found = json.JSONDecoder(), 0, []
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    specs = [TaskSpec.model_validate({"name": "t", "image": "i", **value}) for value in found]
    assert len(specs) == 2
    assert all(spec.constraints for spec in specs)


def test_the_task_record_of_the_wire_contract_is_one() -> None:
    # its spec is elided ("the TaskSpec"): any spec stands in for it
    record = json.loads(block("docs/wire-contract.md", "example: task-record"))
    record["spec"] = {"name": record["name"], "image": record["image"]}
    task = TaskRecord.model_validate_json(json.dumps(record), strict=True)
    assert task.endpoints == ("10.0.0.2:32820",) and task.host_ports == {"8080": 32820}


def test_the_unplaced_record_of_the_wire_contract_is_one() -> None:
    # its list of nodes is cut short ("..."): the nodes shown stand for it
    unplaced = json.loads(block("docs/wire-contract.md", "example: unplaced"))
    unplaced["nodes"] = [node for node in unplaced["nodes"] if node != "..."]
    found = Unplaced.model_validate_json(json.dumps(unplaced), strict=True)
    assert found.kind.value == "insufficient_cpu" and found.nodes[0].exhausted


def test_the_stream_frame_of_the_wire_contract_is_one() -> None:
    frame = StreamFrame.model_validate_json(
        block("docs/wire-contract.md", "example: stream-frame"), strict=True
    )
    assert [chunk.fd for chunk in frame.chunks] == [Fd.STDOUT, Fd.STDERR]
    assert frame.chunks[1].data == "err 41\n"
