"""The committed JSON Schemas match the models (run `python -m shared.schema` to refresh)."""

from __future__ import annotations

import pytest

from shared.schema import MESSAGES, SCHEMA_DIR, render


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_committed_schema_is_current(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.exists(), f"{path} is missing: run python -m shared.schema"
    assert path.read_text() == render(name), f"{path} is stale: run python -m shared.schema"


def test_no_schema_file_is_left_over() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert names == set(MESSAGES)
