"""kstatus-like readiness of live objects, and the object list of a Helm release (pure).

The rules follow kstatus' spirit for the kinds charts commonly create; any other kind counts as ready once
it exists (as kstatus does for kinds without status conventions), unless it carries a ``Ready`` condition
that is not ``True``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

READY, NOT_READY, MISSING, UNKNOWN = "Ready", "NotReady", "Missing", "Unknown"


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str


def decode_release(data: str) -> dict[str, Any]:
    """The release record stored in a Helm storage Secret's ``release`` key: the API's base64 of Helm's
    base64 of gzip(JSON) (gzip is detected by its magic bytes, as Helm does).  Bounded, since a tenant can
    write such a Secret: an oversized or malformed record raises ``BadRelease`` (a ``ValueError``)."""
    from helmops.reconcile.storage import decode_release as bounded_decode_release

    return bounded_decode_release(data)


def manifest_objects(manifest: str, default_namespace: str, namespaced: Any = None) -> list[ObjectRef]:
    """The objects a rendered manifest lists (hooks are not part of ``manifest``). Objects without a
    namespace get ``default_namespace`` unless ``namespaced(api_version, kind)`` says they are
    cluster-scoped."""
    out: list[ObjectRef] = []
    seen: set[ObjectRef] = set()
    for doc in _documents(manifest):
        meta = doc.get("metadata") or {}
        api_version, kind, name = str(doc.get("apiVersion") or ""), str(doc.get("kind") or ""), meta.get("name")
        if not (api_version and kind and name):
            continue
        scoped = namespaced(api_version, kind) if namespaced is not None else kind not in CLUSTER_SCOPED
        ns = str(meta.get("namespace") or default_namespace) if scoped else ""
        ref = ObjectRef(api_version, kind, ns, str(name))
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
    return out


def _documents(manifest: str) -> Iterator[Mapping[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(manifest))
    except (yaml.YAMLError, RecursionError):  # PyYAML recurses: a chart can render any depth
        return
    for doc in docs:
        if isinstance(doc, Mapping):
            if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
                yield from (i for i in doc["items"] if isinstance(i, Mapping))
            else:
                yield doc


#: kinds without a namespace (the common built-ins; CRD kinds are resolved by discovery when needed).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "RuntimeClass",
        "CSIDriver",
        "VolumeAttachment",
    }
)


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


__all__ = [
    "CLUSTER_SCOPED",
    "MISSING",
    "NOT_READY",
    "READY",
    "UNKNOWN",
    "ObjectRef",
    "decode_release",
    "manifest_objects",
    "readiness",
]
