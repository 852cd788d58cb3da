"""The job spec of docs/jobs.md is one kube takes, and makes a job."""

from __future__ import annotations

from shared.specs import TaskSpec
from tests.support.docblocks import block


def test_the_job_spec_of_docs_jobs_is_a_job() -> None:
    spec = TaskSpec.model_validate_json(block("docs/jobs.md", "example: job spec"), strict=True)
    assert spec.schedule == "*/5 * * * *" and spec.replicas is None
