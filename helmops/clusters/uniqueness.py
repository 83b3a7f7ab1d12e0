"""One Fleet Cluster per real cluster: two Cluster objects reaching the same API server are refused.

A cluster registered twice (re-imported under a new name, a second kubeconfig Secret) makes one HelmApp see
one release through two cluster names. Each name has its own ledger entries and its own place in the
deployed-clusters annotation, so dropping one name from the targets uninstalled, through it, the release the
other name still deploys — while status said Ready. A kubeconfig's server URL cannot tell two names apart
(proxies, DNS aliases, a new URL after a re-import), so a cluster is identified by something it holds: the
UID of its ``kube-system`` namespace, read once when the connection is made.

Among the Cluster objects of one namespace (the names a HelmApp can target) that resolve to one identity the
earliest wins — the controller's own cluster first (``local``: the implicit one, and a Cluster named
``local`` whatever its kubeconfig), then the oldest ``creationTimestamp``, then the smallest name — and every
other is refused with :class:`DuplicateCluster`: no helm action and no clean-up runs through it. The verdict
is kept for :data:`VERDICT_TTL` seconds, so a deleted original or a changed Secret is noticed; a Cluster whose
identity cannot be read (its API is down, its credentials may not read ``kube-system``) is not considered a
duplicate of anything and is checked again later. A refusal never uninstalls anything, so a verdict that
changes later (an older Cluster comes back up) is safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from helmops.api.keys import LOCAL
from helmops.clusters.errors import ClusterUnreachable

log = logging.getLogger("helmops.clusters")

#: seconds a verdict (duplicate or not) is reused before the namespace's Clusters are looked at again.
VERDICT_TTL = 30.0
#: older Cluster objects whose identity one check may learn (each one API call, once per kubeconfig Secret).
MAX_PROBES = 512
#: seconds allowed for reading a cluster's identity.
PROBE_TIMEOUT = 10.0
#: the namespace every Kubernetes cluster has, whose UID names the cluster.
IDENTITY_NAMESPACE = "kube-system"


class DuplicateCluster(ClusterUnreachable):
    """This Cluster object reaches the same cluster as an earlier one: refused (message names both)."""

    reason = "DuplicateCluster"

    def __init__(self, message: str, *, original: tuple[str, str]) -> None:
        super().__init__(message, retryable=True)
        #: (namespace, name) of the Cluster object that keeps the cluster.
        self.original = original


@dataclass(frozen=True, order=True)
class Claim:
    """A Cluster object's place in the "who was first" order."""

    rank: int  # 0: the controller's own cluster (local), 1: any other Cluster object
    created: str  # creationTimestamp (RFC 3339, sorts as text)
    name: str
    namespace: str

    @classmethod
    def of(cls, cluster: Mapping[str, Any]) -> Claim:
        meta = cluster.get("metadata") or {}
        name = str(meta.get("name") or "")
        created, namespace = str(meta.get("creationTimestamp") or ""), str(meta.get("namespace") or "")
        return cls(0 if name == LOCAL else 1, created, name, namespace)

    def describe(self) -> str:
        if self.rank == 0 and not self.created:
            return f"the local cluster (the controller's own) in namespace {self.namespace}"
        return f"cluster {self.name} in namespace {self.namespace}"


def duplicate_message(cluster: Claim, original: Claim, identity: str) -> str:
    """The condition/Event text: both Cluster objects and what they share (no credential, no server URL)."""
    return (
        f"{cluster.describe()}: refused, it reaches the same cluster as {original.describe()} "
        f"({IDENTITY_NAMESPACE} namespace UID {identity}); {cluster.name} is the later Cluster object, so "
        f"nothing is installed, upgraded or uninstalled through it; delete one of the two Cluster objects"
    )


def earliest(cluster: Claim, identity: str, others: Mapping[Claim, str | None]) -> Claim | None:
    """The earliest Cluster of ``others`` that has ``identity`` and comes before ``cluster`` (None: none).
    Pure: the whole rule, tested without a cluster."""
    found = [c for c, ident in others.items() if ident == identity and c < cluster and c != cluster]
    return min(found) if found else None


#: how the checker learns a Cluster object's identity (None: unknown) — Connections builds (and caches) the
#: connection without the uniqueness check and reads ``kube-system``.
IdentityOf = Callable[[Mapping[str, Any]], Awaitable[str | None]]


class Uniqueness:
    """Decides whether a Cluster object is the first to reach its cluster; caches verdicts for a while."""

    def __init__(
        self,
        identity_of: IdentityOf,
        local_identity: Callable[[], Awaitable[str | None]],
        list_clusters: Callable[[str], Awaitable[list[dict[str, Any]]]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identity_of, self._local_identity, self._list = identity_of, local_identity, list_clusters
        self._clock = clock
        #: (namespace, name) -> (identity checked, verdict, time): None verdict means "first".
        self._verdicts: dict[tuple[str, str], tuple[str, DuplicateCluster | None, float]] = {}
        #: namespace -> (its Cluster objects, time listed): one list per namespace per VERDICT_TTL.
        self._lists: dict[str, tuple[list[dict[str, Any]], float]] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._verdicts.pop((namespace, name), None)
        self._lists.pop(namespace, None)

    async def check(self, cluster: Mapping[str, Any], identity: str | None) -> None:
        """Raises :class:`DuplicateCluster` when an earlier Cluster object (or the local cluster) in the same
        namespace reaches the cluster ``identity`` names. ``identity`` None (unknown): nothing to compare."""
        if not identity:
            return
        me = Claim.of(cluster)
        key = (me.namespace, me.name)
        cached = self._verdicts.get(key)
        now = self._clock()
        if cached is not None and cached[0] == identity and now - cached[2] < VERDICT_TTL:
            if cached[1] is not None:
                raise cached[1]
            return
        verdict = await self._decide(me, identity)
        if len(self._verdicts) > 4 * MAX_PROBES:  # Cluster objects come and go: keep the table bounded
            self._verdicts.clear()
        self._verdicts[key] = (identity, verdict, now)
        if verdict is not None:
            if cached is None or cached[1] is None:
                log.warning("%s", verdict.message)
            raise verdict

    async def _clusters(self, namespace: str) -> list[dict[str, Any]]:
        cached = self._lists.get(namespace)
        now = self._clock()
        if cached is not None and now - cached[1] < VERDICT_TTL:
            return cached[0]
        items = await self._list(namespace)
        if len(self._lists) > MAX_PROBES:
            self._lists.clear()
        self._lists[namespace] = (items, now)
        return items

    async def _decide(self, me: Claim, identity: str) -> DuplicateCluster | None:
        if me.rank == 0:
            return None  # the local cluster comes first whatever else reaches it
        others: dict[Claim, str | None] = {}
        local = await self._local_identity()
        if local:
            others[Claim(0, "", LOCAL, me.namespace)] = local
        objs = [c for c in await self._clusters(me.namespace) if Claim.of(c) < me]
        objs.sort(key=Claim.of)
        if len(objs) > MAX_PROBES:
            log.warning(
                "cluster %s in namespace %s: %d older Cluster objects; only the %d oldest are compared with it",
                me.name, me.namespace, len(objs), MAX_PROBES,
            )  # fmt: skip
            objs = objs[:MAX_PROBES]
        idents = await asyncio.gather(*(self._identity_of(c) for c in objs), return_exceptions=True)
        for c, ident in zip(objs, idents, strict=True):
            others[Claim.of(c)] = ident if isinstance(ident, str) else None
        first = earliest(me, identity, others)
        if first is None:
            return None
        return DuplicateCluster(duplicate_message(me, first, identity), original=(first.namespace, first.name))


__all__ = [
    "IDENTITY_NAMESPACE",
    "MAX_PROBES",
    "VERDICT_TTL",
    "Claim",
    "DuplicateCluster",
    "Uniqueness",
    "duplicate_message",
    "earliest",
]
