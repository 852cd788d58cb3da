"""Whether a test failed, for fixtures that show their logs only then.

The key lives here, not in conftest.py: pytest imports that file as `conftest` while test
modules import it as `tests.conftest`, two modules with two different keys, so a helper
imported from `tests.conftest` would never see the failure the hook recorded.
"""

from __future__ import annotations

import pytest

FAILED_KEY = pytest.StashKey[bool]()


def call_failed(request: pytest.FixtureRequest) -> bool:
    """True once the test's call phase has failed (conftest.py's makereport hook records it)."""
    return request.node.stash.get(FAILED_KEY, False)
