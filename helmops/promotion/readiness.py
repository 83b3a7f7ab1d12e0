"""When a HelmApp counts as running its version Ready everywhere (the rule ``helmops promote`` and the soak
promotion share), and the one spec change a promotion makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return {}


def not_ready_reasons(obj: Mapping[str, Any], version: str | None = None) -> list[str]:
    """Why ``obj`` is not Ready everywhere (at ``version``, when given); empty when it is."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    reasons = []
    deployed = status.get("version") or ""
    if not deployed:
        reasons.append("status.version is empty (no version deployed yet)")
    elif version is not None and deployed != version:
        reasons.append(f"status.version is {deployed}, not {version}")
    ready = condition(obj, "Ready")
    if ready.get("status") != "True":
        message = ready.get("message") or ""
        reasons.append(f"Ready is {ready.get('status') or 'unknown'}" + (f": {message}" if message else ""))
    accepted = condition(obj, "Accepted")
    if accepted.get("status") == "False":
        reasons.append(f"Accepted is False: {accepted.get('message') or ''}".rstrip(": "))
    ready_clusters = int(status.get("readyClusters") or 0)
    desired_clusters = int(status.get("desiredReadyClusters") or 0)
    if desired_clusters == 0:
        reasons.append("no clusters are targeted (desiredReadyClusters is 0)")
    elif ready_clusters != desired_clusters:
        reasons.append(f"{ready_clusters}/{desired_clusters} clusters ready")
    observed = status.get("observedGeneration")
    generation = meta.get("generation")
    if observed is not None and generation is not None and int(observed) != int(generation):
        reasons.append(f"status describes generation {observed}, the spec is at generation {generation}")
    return reasons


def promotion_patch(
    target: Mapping[str, Any], version: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The merge patch setting ``spec.helm.version`` (guarded by the target's resourceVersion, so a
    concurrent edit makes it fail instead of being overwritten)."""
    meta: dict[str, Any] = {"resourceVersion": target["metadata"]["resourceVersion"]}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": {"helm": {"version": version}}}


__all__ = ["condition", "not_ready_reasons", "promotion_patch"]
