"""A release's rendered manifest as objects, and the reference that names one object (pure).

The one parser of Helm's ``manifest`` for every reader: drift compares the objects with what is live
(:mod:`helmops.drift`), readiness reads each listed object (:mod:`helmops.clusters.live`).  The record that
holds the manifest is decoded, within bounds, by :mod:`helmops.reconcile.storage`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["CLUSTER_SCOPED", "ObjectRef", "manifest_objects", "object_ref", "object_refs"]


@dataclass(frozen=True, order=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def display(self) -> str:
        """Fleet's resource naming: ``configmap.v1 ns/name`` (kind lower-cased, then the apiVersion)."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind.lower()}.{self.api_version.replace('/', '.')} {where}"


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a rendered manifest: ``List`` kinds (``List``, ``ConfigMapList``, ...) flattened into
    their items, empty documents and anything without a ``kind`` skipped.  A manifest PyYAML cannot parse
    (malformed, or nested deeper than its recursion allows: a tenant's chart can render any depth) has no
    objects: nothing to compare, nothing to wait for."""
    out: list[dict[str, Any]] = []
    try:
        docs = list(yaml.safe_load_all(manifest or ""))
    except (yaml.YAMLError, RecursionError):
        return out
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        if str(doc["kind"]).endswith("List") and isinstance(doc.get("items"), list):
            out.extend(i for i in doc["items"] if isinstance(i, dict) and i.get("kind"))
        else:
            out.append(doc)
    return out


def object_ref(obj: Mapping[str, Any], release_namespace: str, namespaced: bool = True) -> ObjectRef:
    """The reference of ``obj``; a namespaced object without a namespace is in ``release_namespace``."""
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or release_namespace) if namespaced else ""
    return ObjectRef(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""), ns, str(meta.get("name") or ""))


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


def object_refs(
    manifest: str, default_namespace: str, namespaced: Callable[[str, str], bool | None] | None = None
) -> list[ObjectRef]:
    """The objects a rendered manifest lists, each once, in manifest order (hooks are not part of
    ``manifest``).  Objects need an apiVersion, a kind and a name.  Objects without a namespace get
    ``default_namespace`` unless ``namespaced(api_version, kind)`` (default: not in :data:`CLUSTER_SCOPED`)
    says they are cluster-scoped."""
    out: list[ObjectRef] = []
    seen: set[ObjectRef] = set()
    for doc in manifest_objects(manifest):
        meta = doc.get("metadata") or {}
        api_version, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
        if not (api_version and kind and meta.get("name")):
            continue
        scoped = namespaced(api_version, kind) if namespaced is not None else kind not in CLUSTER_SCOPED
        ref = object_ref(doc, default_namespace, bool(scoped))
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
    return out
