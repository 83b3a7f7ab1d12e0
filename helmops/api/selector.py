"""Kubernetes label selectors, as Fleet uses them to pick clusters and cluster groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from helmops.api.base import ApiModel

#: Operators a label selector requirement may use; anything else makes the selector unusable.
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_ATOMIC_LIST: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}


class LabelSelectorRequirement(ApiModel):
    """One condition on a label: the label ``key`` related to ``values`` by ``operator``."""

    key: str
    """Label key the condition is about."""
    operator: str
    """How the label relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[str] = Field(default_factory=list, json_schema_extra=_ATOMIC_LIST)
    """Candidate label values. Required (non-empty) for In and NotIn; must be empty for Exists and
    DoesNotExist."""

    def problem(self) -> str | None:
        """Why this requirement cannot be evaluated, or None when it is well formed."""
        if self.operator not in SELECTOR_OPERATORS:
            return f"unknown operator {self.operator!r} (use one of {', '.join(SELECTOR_OPERATORS)})"
        if self.operator in ("In", "NotIn") and not self.values:
            return f"operator {self.operator} needs at least one value"
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            return f"operator {self.operator} takes no values"
        return None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement; ValueError if the requirement is malformed."""
        why = self.problem()
        if why is not None:
            raise ValueError(f"label selector requirement on {self.key!r}: {why}")
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        # NotIn also holds when the label is absent, as in Kubernetes.
        return self.key not in labels or labels[self.key] not in self.values


class LabelSelector(ApiModel, json_schema_extra={"x-kubernetes-map-type": "atomic"}):
    """Selects objects by their labels. All conditions must hold; an empty selector selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    """Labels that must be present with exactly these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, json_schema_extra=_ATOMIC_LIST)
    """Further conditions on labels, all of which must hold."""

    def problems(self) -> list[tuple[str, str]]:
        """Why this selector cannot be evaluated, as (field path within the selector, reason) pairs;
        empty when it is well formed."""
        found = []
        for index, requirement in enumerate(self.match_expressions):
            why = requirement.problem()
            if why is not None:
                found.append((f"matchExpressions[{index}]", why))
        return found

    def is_empty(self) -> bool:
        """True when the selector has no conditions, i.e. it selects every object."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected.

        Pure. Raises ValueError for a malformed requirement (unknown operator, In/NotIn without values,
        Exists/DoesNotExist with values) rather than guessing, as Kubernetes refuses such selectors.
        """
        problems = self.problems()
        if problems:
            raise ValueError("invalid label selector: " + "; ".join(f"{p}: {w}" for p, w in problems))
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)
