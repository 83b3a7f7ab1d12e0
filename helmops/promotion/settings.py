"""The safe-promotion options of one HelmApp, read from its ``helmops.cattle.io/`` annotations.

They are annotations, not spec fields, because Fleet's HelmApp CRD prunes fields it does not know. The
annotations are tenant-written: every one is size-capped and parsed strictly; a bad one is a
:class:`SettingsError` the controller reports as a status condition, an Event and a log line (and then
holds every mutating action: a gate that cannot be read must not open).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from helmops.api.selector import LabelSelector
from helmops.promotion.keys import (
    ANNOTATIONS,
    APPROVAL_SELECTOR,
    APPROVED_PLAN,
    OVERRIDE,
    PLAN,
    PROMOTE_FROM,
    PROMOTED,
    READY_SINCE,
    REQUIRE_APPROVAL,
    SOAK,
    WINDOWS,
)

#: the largest annotation value parsed (bytes); tenants write these.
MAX_TEXT = 16 * 1024
#: the most windows one HelmApp may declare.
MAX_WINDOWS = 16


class SettingsError(ValueError):
    """A safe-promotion annotation is invalid; the message names the annotation, never its whole value."""


def bounded_text(annotations: Mapping[str, str], key: str) -> str | None:
    """The annotation's value, or None when absent; SettingsError past :data:`MAX_TEXT`."""
    value = annotations.get(key)
    if value is None:
        return None
    if len(value) > MAX_TEXT:
        raise SettingsError(f"annotation {key} is longer than {MAX_TEXT} bytes")
    return value


def structured(annotations: Mapping[str, str], key: str) -> Any:
    """A JSON or YAML annotation value (None when absent or empty)."""
    text = bounded_text(annotations, key)
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        raise SettingsError(f"annotation {key} is neither JSON nor YAML") from None


def _flag(annotations: Mapping[str, str], key: str) -> bool:
    text = (bounded_text(annotations, key) or "").strip().lower()
    if text in ("", "false"):
        return False
    if text == "true":
        return True
    raise SettingsError(f'annotation {key} must be "true" or "false"')


@dataclass(frozen=True)
class Approval:
    """Whether, and on which clusters, this HelmApp's mutating actions wait for an approved plan."""

    required: bool
    selector: LabelSelector | None = None

    def applies_to(self, cluster_labels: Mapping[str, str]) -> bool:
        if not self.required:
            return False
        return self.selector is None or self.selector.matches(cluster_labels)


def approval(annotations: Mapping[str, str]) -> Approval:
    """The approval setting; SettingsError for a malformed one."""
    required = _flag(annotations, REQUIRE_APPROVAL)
    raw = structured(annotations, APPROVAL_SELECTOR)
    if raw is None:
        return Approval(required)
    if not isinstance(raw, dict):
        raise SettingsError(f"annotation {APPROVAL_SELECTOR} must be a label selector object")
    try:
        selector = LabelSelector.model_validate(raw)
    except ValidationError:
        raise SettingsError(f"annotation {APPROVAL_SELECTOR} is not a label selector") from None
    if problems := selector.problems():
        raise SettingsError(f"annotation {APPROVAL_SELECTOR}: " + "; ".join(f"{p}: {w}" for p, w in problems))
    return Approval(required, selector)


def plan_hash_text(annotations: Mapping[str, str], key: str) -> str:
    """A plan hash annotation (approved-plan, window-override), "" when absent; garbage counts as none."""
    text = (annotations.get(key) or "").strip()
    return text if 0 < len(text) <= 64 and text.isalnum() else ""


__all__ = [
    "ANNOTATIONS",
    "APPROVAL_SELECTOR",
    "APPROVED_PLAN",
    "OVERRIDE",
    "PLAN",
    "PROMOTED",
    "PROMOTE_FROM",
    "READY_SINCE",
    "REQUIRE_APPROVAL",
    "SOAK",
    "WINDOWS",
    "Approval",
    "SettingsError",
    "approval",
    "bounded_text",
    "plan_hash_text",
    "structured",
]


def problems(annotations: Mapping[str, str], namespace: str = "") -> list[tuple[str, str]]:
    """(annotation, why) for every malformed safe-promotion annotation: what ``helmops validate`` reports
    before the controller would hold the HelmApp for it."""
    from helmops.promotion.soak import soak_setting
    from helmops.promotion.windows import windows

    found = []
    for key, check in (
        (REQUIRE_APPROVAL, approval),
        (WINDOWS, windows),
        (PROMOTE_FROM, lambda a: soak_setting(a, namespace)),
    ):
        try:
            check(annotations)
        except SettingsError as exc:
            found.append((key, str(exc)))
    return found
