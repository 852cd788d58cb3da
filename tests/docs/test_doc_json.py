"""The JSON examples of docs/ are what kube takes."""

from __future__ import annotations

import json

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
