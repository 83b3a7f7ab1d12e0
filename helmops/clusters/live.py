"""Readiness of a release's objects on one cluster: the manifest from Helm's storage Secret (no helm
process), then one GET per listed object, judged by :func:`helmops.status.readiness.readiness`. Each
object's REST path comes from the cluster's discovery (:mod:`helmops.kubeio.mapping`)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from helmops.kubeio.mapping import DiscoveryFailed, Resource, RestMappings
from helmops.kubeio.rest import get_json
from helmops.reconcile.manifest import ObjectRef, object_refs
from helmops.reconcile.storage import decode_release
from helmops.status import ResourceState
from helmops.status.readiness import MISSING, READY, UNKNOWN, readiness

log = logging.getLogger("helmops.clusters")

#: objects read per release at most (the rest count as Unknown), to bound API calls.
MAX_OBJECTS = 200
#: the message of an object the acting identity may not read (its state is Unknown; nothing else is said).
ACCESS_DENIED = "access denied"
#: kinds with no status at all: ready once they exist (helmops.status.readiness). Right after helm created or
#: updated them (a successful install/upgrade), their GET could only say so; resyncs still read them.
STATUSLESS = frozenset(
    {
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    }
)


def object_path(resource: Resource, ref: ObjectRef) -> str:
    return resource.path(ref.namespace, ref.name)


class LiveResources:
    """Per-cluster readiness reader; the manifest's object list is cached per release revision.

    ``api`` is the client the objects are read with: the caller passes one acting as the HelmApp's
    serviceAccount (``helmops.clusters.identity``), so a release record that lists objects the account may not
    read yields "access denied" (state Unknown), never their content or even their existence. ``core`` reads
    the release record itself (Helm's storage Secret) with the controller's identity."""

    def __init__(self, cache_size: int = 512, mappings: RestMappings | None = None) -> None:
        self._refs: OrderedDict[tuple[str, str, str, int], list[ObjectRef]] = OrderedDict()
        self._size = cache_size
        #: each cluster's REST mapping (kind → plural, namespaced), from its discovery.
        self.mappings = mappings if mappings is not None else RestMappings()

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
        return self.remember(cluster, namespace, name, revision, str(release.get("manifest") or ""))

    def remember(self, cluster: str, namespace: str, name: str, revision: int, manifest: str) -> list[ObjectRef]:
        """The objects of a revision from its manifest: the release record's, or the one helm printed when
        it installed that revision (then the record is not read back)."""
        refs = object_refs(manifest, namespace)
        self._refs[(cluster, namespace, name, revision)] = refs
        while len(self._refs) > self._size:
            self._refs.popitem(last=False)
        return refs

    async def states(
        self,
        api: Any,
        core: Any,
        cluster: str,
        namespace: str,
        name: str,
        revision: int,
        *,
        just_applied: bool = False,
    ) -> tuple[ResourceState, ...]:
        """``just_applied``: helm has just created or updated every object of ``revision`` (a successful
        install or upgrade): objects of :data:`STATUSLESS` kinds count as Ready without a GET."""
        refs = await self.objects(api, core, cluster, namespace, name, revision)
        mapper = self.mappings.of(cluster)
        out: list[ResourceState] = []
        for i, ref in enumerate(refs):
            if i >= MAX_OBJECTS:
                out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, UNKNOWN, "not checked"))
                continue
            if just_applied and (ref.api_version, ref.kind) in STATUSLESS:
                out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, READY, ""))
                continue
            try:
                resource = await mapper.resource(api, ref.api_version, ref.kind)
            except DiscoveryFailed as exc:
                state, message = UNKNOWN, f"HTTP {exc.status}"
                out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, state, message))
                continue
            if resource is None:  # a kind the cluster does not serve: no such object
                out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, MISSING, ""))
                continue
            status, obj = await get_json(api, object_path(resource, ref))
            if status == 404:
                state, message = MISSING, ""
            elif status in (401, 403):
                state, message = UNKNOWN, f"{ACCESS_DENIED} (get {resource.plural})"
            elif obj is None:
                state, message = UNKNOWN, f"HTTP {status}"
            else:
                state, message = readiness(obj)
            out.append(ResourceState(ref.api_version, ref.kind, ref.namespace, ref.name, state, message))
        return tuple(out)

    def forget(self, cluster: str) -> None:
        for key in [k for k in self._refs if k[0] == cluster]:
            del self._refs[key]
        self.mappings.forget(cluster)


__all__ = ["ACCESS_DENIED", "STATUSLESS", "LiveResources", "object_path"]
