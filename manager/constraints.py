"""Task constraints on node labels: equality, inequality, set membership, existence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.specs import Constraint, ConstraintOp


def holds(rule: Constraint, labels: Mapping[str, str]) -> bool:
    """Whether a node with these labels satisfies the rule."""
    value = labels.get(rule.key)
    if rule.op == ConstraintOp.EXISTS:
        return value is not None
    if rule.op == ConstraintOp.NOT_EXISTS:
        return value is None
    if rule.op in (ConstraintOp.EQ, ConstraintOp.IN):
        return value is not None and value in rule.values
    # != and "not in" hold for a node without the label, as in Kubernetes' NotIn.
    return value not in rule.values


def failed_rule(rules: Iterable[Constraint], labels: Mapping[str, str]) -> Constraint | None:
    """The first of a task's constraints (`TaskSpec.rules()`) the labels break, or None."""
    return next((rule for rule in rules if not holds(rule, labels)), None)
