"""Re-targeting: Fleet Cluster and ClusterGroup changes re-queue the HelmApps of their namespace.

The controller keeps an index from namespace to the (in-shard) HelmApps it has seen there, so a Cluster
event costs a dictionary lookup, not a scan of every HelmApp. Only changes that can alter targeting or the
rendered values trigger: labels, annotations, spec (selector, kubeConfigSecret, templateValues, paused),
creation and deletion — not a Cluster's status updates, which Fleet writes often.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from helmops.api.keys import Key

log = logging.getLogger("helmops.clusters")


def cluster_trigger(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted((meta.get("annotations") or {}).items())),
        repr(body.get("spec")),
        meta.get("deletionTimestamp"),
    )


class ClusterIndex:
    """namespace → HelmApp keys, fed by the HelmApp watch; Cluster/ClusterGroup events enqueue from it."""

    def __init__(self, enqueue: Callable[[Key], None]) -> None:
        self._enqueue = enqueue
        self._by_ns: dict[str, set[Key]] = {}
        self._seen: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        #: called with (namespace, name) when a Cluster object is deleted (drop its cached connection).
        self.on_cluster_deleted: Callable[[str, str], Any] | None = None

    def helmapp(self, key: Key, present: bool) -> None:
        keys = self._by_ns.setdefault(key[0], set())
        if present:
            keys.add(key)
        else:
            keys.discard(key)
            if not keys:
                self._by_ns.pop(key[0], None)

    def helmapps(self, namespace: str) -> list[Key]:
        return sorted(self._by_ns.get(namespace, ()))

    def fleet_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> list[Key]:
        """A Cluster or ClusterGroup event; returns (and enqueues) the HelmApps to re-evaluate."""
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        ident = (kind, ns, name)
        if event_type == "DELETED":
            self._seen.pop(ident, None)
            if kind == "Cluster" and self.on_cluster_deleted is not None:
                self.on_cluster_deleted(ns, name)
        else:
            trigger = cluster_trigger(body)
            if self._seen.get(ident) == trigger:
                return []
            self._seen[ident] = trigger
        keys = self.helmapps(ns)
        if keys:
            log.info("%s %s/%s changed: re-evaluating %d HelmApp(s)", kind, ns, name, len(keys))
        for key in keys:
            self._enqueue(key)
        return keys


def register(registry: Any, index: ClusterIndex) -> None:
    """kopf ``on.event`` handlers for Fleet Clusters and ClusterGroups feeding ``index``."""
    import kopf

    @kopf.on.event("fleet.cattle.io", "v1alpha1", "clusters", registry=registry)
    async def on_cluster(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        index.fleet_event("Cluster", event.get("type"), body)

    @kopf.on.event("fleet.cattle.io", "v1alpha1", "clustergroups", registry=registry)
    async def on_group(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        index.fleet_event("ClusterGroup", event.get("type"), body)


__all__ = ["ClusterIndex", "cluster_trigger", "register"]
