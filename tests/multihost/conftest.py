"""The multihost test bed: each test gets a Bed, to which it adds the hosts it needs.

Tests that use `bed` are marked `multihost` (and `broker` and `docker`, through the vhost
and the image). They need root, the broker and the machine's engine (for the image).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import unavailable
from tests.support.hosts import Bed, missing_tools, running_bed
from tests.support.reports import call_failed


@pytest.fixture(autouse=True)
def bed_tools() -> None:
    """Skip (fail in CI) where hosts cannot be made."""
    if missing := missing_tools():
        unavailable(f"multihost tests need {', '.join(missing)}")


@pytest.fixture
def bed(vhost: str, busybox_image: str, request: pytest.FixtureRequest) -> Iterator[Bed]:
    """A test bed whose hosts' engines get the busybox image; removed after the test, and
    its hosts' logs printed first if the test failed."""
    with running_bed(vhost, busybox_image) as made:
        yield made
        if call_failed(request):
            print(made.logs())
