"""Readiness of a release's objects on one cluster: the manifest from Helm's storage Secret (no helm
process), then one GET per listed object, judged by :func:`helmops.status.readiness.readiness`."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from helmops.kubeio.bounded import loads as bounded_loads
from helmops.reconcile.manifest import ObjectRef, object_refs
from helmops.reconcile.storage import decode_release
from helmops.status import ResourceState
from helmops.status.readiness import MISSING, UNKNOWN, readiness

log = logging.getLogger("helmops.clusters")

#: irregular plurals of common kinds (the rest: lower-case kind + s / ies / es).
_PLURALS = {
    "Endpoints": "endpoints",
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
    "PodSecurityPolicy": "podsecuritypolicies",
    "PriorityClass": "priorityclasses",
    "StorageClass": "storageclasses",
    "IngressClass": "ingressclasses",
    "RuntimeClass": "runtimeclasses",
}
#: objects read per release at most (the rest count as Unknown), to bound API calls.
MAX_OBJECTS = 200
#: the message of an object the acting identity may not read (its state is Unknown; nothing else is said).
ACCESS_DENIED = "access denied"
REQUEST_TIMEOUT = 15.0


def plural(kind: str) -> str:
    if kind in _PLURALS:
        return _PLURALS[kind]
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u"):
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"


def object_path(ref: ObjectRef) -> str:
    base = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
    ns = f"/namespaces/{ref.namespace}" if ref.namespace else ""
    return f"{base}{ns}/{plural(ref.kind)}/{ref.name}"


async def get_json(api: Any, path: str) -> tuple[int, Any]:
    """A raw authenticated GET with the ApiClient (any kind, no typed model)."""
    method, url, headers, _, _ = await api.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    resp = await api.call_api(method, url, header_params=headers, _request_timeout=REQUEST_TIMEOUT)
    data = await resp.read()
    if resp.status >= 300:
        return int(resp.status), None
    return int(resp.status), bounded_loads(data)  # release objects are tenant-made: any depth (helmops.kubeio)


class LiveResources:
    """Per-cluster readiness reader; the manifest's object list is cached per release revision.

    ``api`` is the client the objects are read with: the caller passes one acting as the HelmApp's
    serviceAccount (``helmops.clusters.identity``), so a release record that lists objects the account may not
    read yields "access denied" (state Unknown), never their content or even their existence. ``core`` reads
    the release record itself (Helm's storage Secret) with the controller's identity."""

    def __init__(self, cache_size: int = 512) -> None:
        self._refs: OrderedDict[tuple[str, str, str, int], list[ObjectRef]] = OrderedDict()
        self._size = cache_size

    async def objects(
        self, api: Any, core: Any, cluster: str, namespace: str, name: str, revision: int
    ) -> list[ObjectRef]:
        key = (cluster, namespace, name, revision)
        if key in self._refs:
            self._refs.move_to_end(key)
            return self._refs[key]
        secret = await core.read_namespaced_secret(f"sh.helm.release.v1.{name}.v{revision}", namespace)
        raw = (secret.data or {}).get("release") or ""
        release = await asyncio.to_thread(decode_release, raw)
        refs = object_refs(str(release.get("manifest") or ""), namespace)
        self._refs[key] = refs
        while len(self._refs) > self._size:
            self._refs.popitem(last=False)
        return refs

    async def states(
        self, api: Any, core: Any, cluster: str, namespace: str, name: str, revision: int
    ) -> tuple[ResourceState, ...]:
        refs = await self.objects(api, core, cluster, namespace, name, revision)
        out: list[ResourceState] = []
        for i, ref in enumerate(refs):
            if i >= MAX_OBJECTS:
                out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, UNKNOWN, "not checked"))
                continue
            status, obj = await get_json(api, object_path(ref))
            if status == 404:
                state, message = MISSING, ""
            elif status in (401, 403):
                state, message = UNKNOWN, f"{ACCESS_DENIED} (get {plural(ref.kind)})"
            elif obj is None:
                state, message = UNKNOWN, f"HTTP {status}"
            else:
                state, message = readiness(obj)
            out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, state, message))
        return tuple(out)

    def forget(self, cluster: str) -> None:
        for key in [k for k in self._refs if k[0] == cluster]:
            del self._refs[key]


__all__ = ["ACCESS_DENIED", "LiveResources", "get_json", "object_path", "plural"]
