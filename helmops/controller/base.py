"""What every part of one reconcile shares: its dependencies (Protocols, faked in unit tests), per-HelmApp
bookkeeping (backoff, Events, the identity it acted as), operator policy, and the one status write.

The reconcile itself is split by job: :mod:`.apply` (one cluster: desired → classify → one action →
readiness), :mod:`.teardown` (deletion, clusters no longer targeted, releases no longer the HelmApp's) and
:mod:`.reconciler` (one HelmApp over all its clusters → status)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from helmops.api.keys import Key
from helmops.api.objects import HelmApp
from helmops.clusters.connections import Connections
from helmops.clusters.identity import Identity, ImpersonatingClients
from helmops.clusters.live import LiveResources
from helmops.clusters.resolve import deployed_clusters
from helmops.controller.connect import ClusterKube, Conn, Connector
from helmops.controller.events import EventRecorder
from helmops.controller.ledger import Ledger, LedgerStore
from helmops.desired.release import ChartFetcher, SpecChecker, ValuesRenderer
from helmops.desired.targets import ClusterTarget, resolve_targets
from helmops.helm.driver import HelmDriver
from helmops.policy import PolicyResult, Violation, aggregate, evaluate
from helmops.policy.source import PolicyUnreadable, RestrictionSource
from helmops.reconcile import ActionResult, backoff
from helmops.reconcile.executor import Executor, Report
from helmops.reconcile.release import ReleaseReader
from helmops.runtime import metrics
from helmops.status import Outcome, compute_status, now_utc, status_changed, status_patch

log = logging.getLogger("helmops.controller")

#: namespaces deleteNamespace never deletes (Fleet's list plus the controller's own).
PROTECTED_NAMESPACES = frozenset(
    {"default", "cattle-fleet-system", "fleet-local", "fleet-default", "cattle-fleet-clusters-system"}
)


def namespace_deletable(name: str, *, own: str, extra: Sequence[str] = ()) -> bool:
    if not name or name in PROTECTED_NAMESPACES or name == own or name in extra:
        return False
    return not name.startswith("kube-")


class KubeAccess(LedgerStore, ClusterKube, Protocol):
    """What the reconciler reads and writes through the Kubernetes API (:class:`helmops.kubeio.kube.Kube`),
    and the store of the ownership ledger. HelmApps come back as read (the edge parses them); writes name
    one by its :meth:`~helmops.api.objects.HelmApp.ref`."""

    api: Any

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def add_finalizer(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None: ...

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None: ...

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None: ...

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]: ...

    async def list_cluster_groups(self, namespace: str) -> list[dict[str, Any]]: ...


class DriftFindings(Protocol):
    """What the drift monitors (helmops.drift) found on each cluster's releases. ``cluster`` is LOCAL or a
    downstream Fleet Cluster's ``namespace/name``."""

    def drifted(self, key: Key, cluster: str) -> str:
        """What drifted on the HelmApp's deployed release there ("" = nothing), as status names it."""
        ...

    def cleared(self, key: Key, cluster: str) -> None:
        """A correction succeeded: nothing drifted until the next check says otherwise."""
        ...

    def attach(self, cluster: str, api: Any, busy: Callable[[str, str], bool]) -> None:
        """A reconcile reached a downstream cluster: watch drift there too."""
        ...


@dataclass
class ReconcilerConfig:
    pending_grace_seconds: float = 60.0
    resync_seconds: float = 600.0
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    own_namespace: str = "cattle-fleet-system"
    shard_id: str | None = None
    protected_namespaces: Sequence[str] = field(default_factory=tuple)
    #: the operator's cap on helm.timeoutSeconds (0 = none); see desired.clamp_timeout.
    max_timeout_seconds: int = 0
    #: refuse HelmApps without a serviceAccount (after a GitRepoRestriction's defaultServiceAccount).
    require_service_account: bool = False


def deployed(app: HelmApp) -> list[str]:
    """The deployed-clusters annotation's names (:func:`helmops.clusters.resolve.deployed_clusters`, which
    reads the manifest form)."""
    return deployed_clusters({"metadata": {"annotations": app.metadata.annotations}})


class ReconcilerBase:
    def __init__(
        self,
        kube: KubeAccess,
        driver: HelmDriver,
        releases: ReleaseReader,
        spec: SpecChecker,
        charts: ChartFetcher,
        values: ValuesRenderer,
        config: ReconcilerConfig,
        *,
        clusters: Connections | None = None,
        live: LiveResources | None = None,
        ledger: Ledger | None = None,
        identities: ImpersonatingClients | None = None,
        restrictions: RestrictionSource | None = None,
        drift: DriftFindings | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.kube, self.driver, self.releases = kube, driver, releases
        #: which releases each HelmApp deployed (helmops.controller.ledger), in the controller's own namespace.
        self.ledger = ledger or Ledger(kube, config.own_namespace)
        self.spec, self.charts, self.values, self.config = spec, charts, values, config
        self.connect = Connector(
            kube, driver, releases, clusters, identities if identities is not None else ImpersonatingClients()
        )
        #: resource readiness reader (None: a deployed release counts as ready).
        self.live = live
        #: drift on the local cluster's releases (None: drift is not checked); an input of classify.
        self.drift = drift
        #: the one place every mutating helm action runs (helmops.reconcile.executor).
        self.executor = executor or Executor()
        #: GitRepoRestrictions by namespace (None: none are read).
        self.restrictions = restrictions
        self.events = EventRecorder(kube)
        self._failures: dict[Key, int] = {}
        self._not_ready: dict[tuple[str, str, str], int] = {}
        #: (namespace, name, cluster) → the clamped timeoutSeconds already announced in an Event.
        self._clamp_said: dict[tuple[str, str, str], int] = {}
        #: the identity each HelmApp acted as at its last reconcile (drift reads use it).
        self._identity: dict[Key, Identity] = {}

    # --- shared with tests and the process ---------------------------------------------------------
    @property
    def clusters(self) -> Connections | None:
        return self.connect.clusters

    @property
    def identities(self) -> ImpersonatingClients:
        return self.connect.identities

    @property
    def kube_for(self) -> Callable[[Any], ClusterKube]:
        return self.connect.kube_for

    @kube_for.setter
    def kube_for(self, make: Callable[[Any], ClusterKube]) -> None:
        self.connect.kube_for = make

    def identity_of(self, key: Key) -> Identity | None:
        """Who the HelmApp acted as at its last reconcile in this process (None: not reconciled yet)."""
        return self._identity.get(key)

    # --- bookkeeping -------------------------------------------------------------------------------
    def _retry_in(self, key: Key) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        return backoff(n, base=self.config.backoff_base_seconds, cap=self.config.backoff_cap_seconds)

    def _ok(self, key: Key) -> None:
        self._failures.pop(key, None)

    def _forget(self, key: Key) -> None:
        """The HelmApp is gone (or another shard's): drop everything kept about it."""
        self._ok(key)
        self.events.forget(key)
        for k in [k for k in self._not_ready if k[:2] == key]:
            del self._not_ready[k]
        for k in [k for k in self._clamp_said if k[:2] == key]:
            del self._clamp_said[k]
        self._identity.pop(key, None)

    def on_error(self, key: Key, exc: BaseException) -> float:
        """Unexpected failures (API errors, bugs): log and retry with backoff."""
        log.error("reconcile %s/%s failed: %s", key[0], key[1], exc, exc_info=exc)
        metrics.RECONCILES.labels("error").inc()
        return self._retry_in(key)

    async def _events(self, app: HelmApp, res: ActionResult, suffix: str = "", conn: Conn | None = None) -> None:
        """Events on the HelmApp; for a cluster other than the local one the message names it."""
        await self.events.post(app, res, suffix, "" if conn is None else conn.where)

    def _report(self, obj: HelmApp, conn: Conn) -> Report:
        """The executor's Event sink for one HelmApp on one cluster."""

        async def report(res: ActionResult, suffix: str) -> None:
            await self._events(obj, res, suffix, conn)

        return report

    async def _write_status(self, key: Key, live: Mapping[str, Any], outcome: Outcome) -> None:
        """``live`` is the status as read (kept in the stored shape: compared and patched as written)."""
        desired = compute_status(outcome, live, now_utc())
        if not status_changed(live, desired):
            return
        out = await self.kube.patch_status(key[0], key[1], status_patch(live, desired))
        if out is None:
            log.debug("HelmApp %s/%s vanished before its status was written", *key)

    # --- targets and policy ------------------------------------------------------------------------
    async def _cluster_objects(self, namespace: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await self.kube.list_clusters(namespace), await self.kube.list_cluster_groups(namespace)

    async def _targets(self, obj: HelmApp) -> tuple[list[ClusterTarget], dict[str, dict[str, Any]]]:
        """The clusters the HelmApp deploys to, and the Cluster objects of its namespace by name."""
        ns = obj.metadata.namespace
        if not obj.spec.targets and "targets" not in obj.unparsed and not deployed(obj):
            return resolve_targets(obj), {}
        clusters, groups = await self._cluster_objects(ns)
        by_name = {str(c["metadata"]["name"]): c for c in clusters}
        return resolve_targets(obj, clusters, groups), by_name

    async def _policy(self, obj: HelmApp) -> PolicyResult:
        """The operator policy for a HelmApp: GitRepoRestrictions of its namespace and the controller's
        --require-service-account (helmops.policy)."""
        items: list[dict[str, Any]] = []
        if self.restrictions is not None:
            try:
                items = await self.restrictions.list(obj.metadata.namespace)
            except PolicyUnreadable as exc:
                return PolicyResult(violations=(Violation("policyUnreadable", str(exc)),))
        return evaluate(obj, aggregate(items), require_service_account=self.config.require_service_account)


__all__ = [
    "PROTECTED_NAMESPACES",
    "DriftFindings",
    "KubeAccess",
    "ReconcilerBase",
    "ReconcilerConfig",
    "deployed",
    "namespace_deletable",
]
