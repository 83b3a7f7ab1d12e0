"""kstatus-like readiness of live objects (pure); the object list of a release is
:func:`helmops.reconcile.manifest.object_refs`.

The rules follow kstatus' spirit for the kinds charts commonly create; any other kind counts as ready once
it exists (as kstatus does for kinds without status conventions), unless it carries a ``Ready`` condition
that is not ``True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

READY, NOT_READY, MISSING, UNKNOWN = "Ready", "NotReady", "Missing", "Unknown"


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _generation_observed(obj: Mapping[str, Any]) -> bool:
    gen = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return gen is None or observed is None or _int(observed) >= _int(gen)


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def readiness(obj: Mapping[str, Any] | None) -> tuple[str, str]:
    """(state, message) of one live object; ``obj`` None means it was not found."""
    if obj is None:
        return MISSING, "not found"
    kind = obj.get("kind") or ""
    spec: Mapping[str, Any] = obj.get("spec") or {}
    status: Mapping[str, Any] = obj.get("status") or {}
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return NOT_READY, "being deleted"
    if kind in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet") and not _generation_observed(obj):
        return NOT_READY, "new generation not observed yet"
    if kind == "Deployment":
        want = _int(spec.get("replicas", 1))
        updated, available = _int(status.get("updatedReplicas")), _int(status.get("availableReplicas"))
        if updated < want:
            return NOT_READY, f"{updated}/{want} replicas updated"
        if available < want:
            return NOT_READY, f"{available}/{want} replicas available"
        return READY, ""
    if kind == "StatefulSet":
        want = _int(spec.get("replicas", 1))
        ready, current = _int(status.get("readyReplicas")), _int(status.get("updatedReplicas"))
        if ready < want:
            return NOT_READY, f"{ready}/{want} replicas ready"
        strategy = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
        if strategy == "RollingUpdate" and current < want:
            return NOT_READY, f"{current}/{want} replicas updated"
        return READY, ""
    if kind == "ReplicaSet":
        want = _int(spec.get("replicas", 1))
        available = _int(status.get("availableReplicas"))
        return (READY, "") if available >= want else (NOT_READY, f"{available}/{want} replicas available")
    if kind == "DaemonSet":
        want = _int(status.get("desiredNumberScheduled"))
        updated, available = _int(status.get("updatedNumberScheduled")), _int(status.get("numberAvailable"))
        if updated < want:
            return NOT_READY, f"{updated}/{want} pods updated"
        if available < want:
            return NOT_READY, f"{available}/{want} pods available"
        return READY, ""
    if kind == "Job":
        failed = _condition(obj, "Failed")
        if failed is not None and failed.get("status") == "True":
            return NOT_READY, f"failed: {failed.get('message') or failed.get('reason') or ''}".rstrip(": ")
        complete = _condition(obj, "Complete")
        if complete is not None and complete.get("status") == "True":
            return READY, ""
        return NOT_READY, "not complete"
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase")
        return (READY, "") if phase == "Bound" else (NOT_READY, f"phase {phase or 'Pending'}")
    if kind == "Pod":
        pod_ready = _condition(obj, "Ready")
        if status.get("phase") == "Succeeded" or (pod_ready is not None and pod_ready.get("status") == "True"):
            return READY, ""
        return NOT_READY, f"phase {status.get('phase') or 'Pending'}"
    if kind in ("Service", "ConfigMap", "Secret", "ServiceAccount", "Namespace", "Role", "RoleBinding",
                "ClusterRole", "ClusterRoleBinding", "Ingress", "NetworkPolicy"):  # fmt: skip
        return READY, ""
    cond = _condition(obj, "Ready")
    if cond is not None and cond.get("status") != "True":
        return NOT_READY, str(cond.get("message") or cond.get("reason") or "Ready condition not True")
    return READY, ""


__all__ = ["MISSING", "NOT_READY", "READY", "UNKNOWN", "readiness"]
