"""Hypothesis strategies for the values a committed JSON Schema (shared/schemas/) allows.

hypothesis-jsonschema would be the library for this, but its 0.23 fails on every object
schema with the hypothesis this project uses (`'many' object has no attribute 'more'`),
so this reads the subset of JSON Schema that pydantic writes for kube's models: $ref and
$defs, const, enum, anyOf/oneOf, objects (properties, required, additionalProperties,
propertyNames, patternProperties, maxProperties), arrays (items, prefixItems, min/max
items), strings (pattern, min/max length, format date-time), integers and numbers
(minimum, maximum and their exclusive forms), booleans and null.

Sizes are kept small (a few items, short free text) so that a fuzz run sends many
messages rather than a few big ones; `caps` bounds named integer properties further
where a value costs the cluster real work (a service of 10,000 replicas).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "schemas"
MAX_ITEMS = 4
MAX_TEXT = 24

OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])

Schema = Mapping[str, Any]


def load(name: str) -> dict[str, Any]:
    """A committed schema, by its file's stem (`task-spec`)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return schema


def from_schema(schema: Schema, caps: Mapping[str, int] | None = None) -> st.SearchStrategy[Any]:
    """Values the schema accepts (model validators beyond the schema are not known here)."""
    return _Builder(schema.get("$defs", {}), caps or {}).build(schema)


def aware_times(lo: datetime, hi: datetime) -> st.SearchStrategy[str]:
    """ISO 8601 times with a UTC offset between lo and hi (naive bounds, in UTC)."""
    return st.builds(
        lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone).isoformat(),
        st.datetimes(min_value=lo, max_value=hi),
        OFFSETS,
    )


RECENT = aware_times(datetime(2020, 1, 1), datetime.now(UTC).replace(tzinfo=None))


class _Builder:
    def __init__(self, defs: Mapping[str, Schema], caps: Mapping[str, int]) -> None:
        self.defs = defs
        self.caps = caps

    def build(self, schema: Schema, name: str = "") -> st.SearchStrategy[Any]:
        if "$ref" in schema:
            target = schema["$ref"].rsplit("/", 1)[1]
            return st.deferred(lambda: self.build(self.defs[target], name))
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.build(option, name) for option in schema[key]])
        kind = schema.get("type")
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            return self.array(schema, name)
        if kind == "string":
            return self.string(schema)
        if kind == "integer":
            return self.integer(schema, name)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind is None:  # any JSON value (Reply.result)
            return st.none() | st.integers() | st.text(max_size=MAX_TEXT)
        raise NotImplementedError(f"schema type {kind!r}")

    def object(self, schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
        properties: Mapping[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if properties:
            return st.fixed_dictionaries(
                {key: self.build(sub, key) for key, sub in properties.items() if key in required},
                optional={
                    key: self.build(sub, key)
                    for key, sub in properties.items()
                    if key not in required
                },
            )
        values = schema.get("additionalProperties", {})
        if values is False:
            return st.just({})
        if "patternProperties" in schema:
            [(pattern, values)] = schema["patternProperties"].items()
            keys: st.SearchStrategy[str] = st.from_regex(pattern, fullmatch=True)
        else:
            keys = self.string({"type": "string", **schema.get("propertyNames", {})})
        most = min(schema.get("maxProperties", MAX_ITEMS), MAX_ITEMS)
        return st.dictionaries(keys, self.build(values), max_size=most)

    def array(self, schema: Schema, name: str) -> st.SearchStrategy[list[Any]]:
        if "prefixItems" in schema:
            return st.tuples(*(self.build(item) for item in schema["prefixItems"])).map(list)
        least = schema.get("minItems", 0)
        most = max(least, min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS))
        return st.lists(self.build(schema.get("items", {}), name), min_size=least, max_size=most)

    def string(self, schema: Schema) -> st.SearchStrategy[str]:
        if schema.get("format") == "date-time":
            return RECENT
        least = schema.get("minLength", 0)
        most = schema.get("maxLength")
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
            return text.filter(lambda s: len(s) >= least and (most is None or len(s) <= most))
        most = max(least, min(most if most is not None else MAX_TEXT, MAX_TEXT))
        return st.text(min_size=least, max_size=most)

    def integer(self, schema: Schema, name: str) -> st.SearchStrategy[int]:
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + 1
        if "exclusiveMaximum" in schema:
            hi = schema["exclusiveMaximum"] - 1
        if name in self.caps:
            hi = self.caps[name] if hi is None else min(hi, self.caps[name])
        return st.integers(min_value=lo, max_value=hi)

    def number(self, schema: Schema) -> st.SearchStrategy[float]:
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        return st.floats(
            min_value=lo,
            max_value=hi,
            exclude_min="exclusiveMinimum" in schema,
            exclude_max="exclusiveMaximum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
