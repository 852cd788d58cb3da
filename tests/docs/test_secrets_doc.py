"""The spec of docs/secrets.md is one kube takes, and mounts where the page says."""

from __future__ import annotations

from shared.specs import TaskSpec
from tests.support.docblocks import block


def test_the_spec_of_the_secrets_page_mounts_where_it_says() -> None:
    spec = TaskSpec.model_validate_json(block("docs/secrets.md", "example: secrets-spec"))
    assert [ref.path() for ref in spec.secrets] == ["/run/secrets/db-password", "/etc/web/token"]
    assert [ref.path() for ref in spec.configs] == ["/etc/nginx/nginx.conf"]
