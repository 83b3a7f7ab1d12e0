"""One reconcile of one HelmApp: resolve its clusters, then per cluster read, compute desired, classify, act
once; write one status (Fleet-shaped, per cluster) and Events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from helmops.clusters.connections import ClusterUnreachable, Connections
from helmops.clusters.identity import Identity, ImpersonatingClients, denial_message, denied
from helmops.clusters.live import ACCESS_DENIED, LiveResources
from helmops.clusters.resolve import (
    DEPLOYED_ANNOTATION,
    LOCAL,
    ClusterTarget,
    deployed_clusters,
    deployed_value,
    has_targets,
    resolve_targets,
)
from helmops.controller.ledger import Entry, Ledger, LedgerFull, MemoryLedgerStore, helmapp_uid
from helmops.desired.release import (
    ChartFetcher,
    Desired,
    DesiredError,
    FetchedChart,
    SpecChecker,
    ValuesRenderer,
    build_release,
    clamp_notice,
    clamp_timeout,
    helm_options,
)
from helmops.helm.driver import HelmDriver
from helmops.kubeio.kube import FINALIZER, Conflict, Kube
from helmops.policy import PolicyResult, Violation, aggregate, evaluate
from helmops.policy.source import PolicyUnreadable, RestrictionSource
from helmops.reconcile import (
    Action,
    ActionResult,
    Classification,
    Decision,
    backoff,
    classify,
    decide,
    install,
    recover,
    uninstall,
    upgrade,
)
from helmops.reconcile.release import OWNER_LABEL, ReleaseInfo, ReleaseReader, labelled_ours, ownership
from helmops.runtime import metrics
from helmops.status import (
    ClusterOutcome,
    Outcome,
    State,
    compute_status,
    now_utc,
    status_changed,
    status_patch,
)

log = logging.getLogger("helmops.controller")

Key = tuple[str, str]

#: an identical Event (same reason and message) for the same HelmApp is posted at most this often.
EVENT_REPEAT_SECONDS = 600.0

#: namespaces deleteNamespace never deletes (Fleet's list plus the controller's own).
PROTECTED_NAMESPACES = frozenset(
    {"default", "cattle-fleet-system", "fleet-local", "fleet-default", "cattle-fleet-clusters-system"}
)


SHARD_LABEL = "fleet.cattle.io/shard-ref"


def in_shard(obj: Mapping[str, Any], shard_id: str | None) -> bool:
    """Fleet's sharding rule: a shard owns objects labelled with its id; the default shard (no id) owns
    the unlabelled ones."""
    label = ((obj.get("metadata") or {}).get("labels") or {}).get(SHARD_LABEL) or None
    return label == (shard_id or None)


def namespace_deletable(name: str, *, own: str, extra: Sequence[str] = ()) -> bool:
    if not name or name in PROTECTED_NAMESPACES or name == own or name in extra:
        return False
    return not name.startswith("kube-")


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


class Reconciler:
    def __init__(
        self,
        kube: Kube,
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
    ) -> None:
        self.kube, self.driver, self.releases = kube, driver, releases
        #: which releases each HelmApp deployed (helmops.controller.ledger), in the controller's own namespace.
        self.ledger = ledger or Ledger(
            kube if hasattr(kube, "read_ledger") else MemoryLedgerStore(), config.own_namespace
        )
        self.spec, self.charts, self.values, self.config = spec, charts, values, config
        #: downstream clusters (None: only the local cluster is reachable).
        self.clusters = clusters
        #: resource readiness reader (None: a deployed release counts as ready).
        self.live = live
        self._failures: dict[Key, int] = {}
        self._last_event: dict[tuple[str, str, str], tuple[str, str, float]] = {}
        self._not_ready: dict[tuple[str, str, str], int] = {}
        #: (namespace, name, cluster) → the clamped timeoutSeconds already announced in an Event.
        self._clamp_said: dict[tuple[str, str, str], int] = {}
        #: day-2 hook (controller/drift.py): what drifted on an in-sync release ("" = nothing), reported
        #: as Fleet's Modified state.
        self.drift: Callable[[Key], str] | None = None
        #: the one source of API clients acting as a HelmApp's serviceAccount (helmops.clusters.identity).
        self.identities = identities if identities is not None else ImpersonatingClients()
        #: a Kube over an (impersonating) ApiClient; replaceable in tests.
        self.kube_for: Callable[[Any], Any] = Kube
        #: GitRepoRestrictions by namespace (None: none are read).
        self.restrictions = restrictions
        #: the identity each HelmApp acted as at its last reconcile (drift reads use it).
        self._identity: dict[Key, Identity] = {}

    # --- bookkeeping -------------------------------------------------------------------------------
    def _retry_in(self, key: Key) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        return backoff(n, base=self.config.backoff_base_seconds, cap=self.config.backoff_cap_seconds)

    def _ok(self, key: Key) -> None:
        self._failures.pop(key, None)

    def on_error(self, key: Key, exc: BaseException) -> float:
        """Unexpected failures (API errors, bugs): log and retry with backoff."""
        log.error("reconcile %s/%s failed: %s", key[0], key[1], exc, exc_info=exc)
        metrics.RECONCILES.labels("error").inc()
        return self._retry_in(key)

    # --- entry point -------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        start = time.monotonic()
        result = "ok"
        try:
            obj = await self.kube.get_helmapp(*key)
            if obj is None or not in_shard(obj, self.config.shard_id):
                self._ok(key)
                for k in [k for k in self._last_event if k[:2] == key]:
                    del self._last_event[k]
                for k in [k for k in self._not_ready if k[:2] == key]:
                    del self._not_ready[k]
                for k in [k for k in self._clamp_said if k[:2] == key]:
                    del self._clamp_said[k]
                self._identity.pop(key, None)
                return None
            if obj["metadata"].get("deletionTimestamp"):
                delay = await self._finalize(key, obj)
            else:
                delay = await self._reconcile(key, obj)
            if key in self._failures:
                result = "retry"
            return delay
        except Conflict:
            result = "conflict"
            return 0.5
        finally:
            metrics.RECONCILES.labels(result).inc()
            metrics.RECONCILE_SECONDS.labels(result).observe(time.monotonic() - start)

    # --- clusters ----------------------------------------------------------------------------------
    def _local_conn(self, namespace: str) -> _Conn:
        api = getattr(self.kube, "api", None)
        return _Conn(LOCAL, namespace, self.driver, self.releases, api, self.kube, local=True)

    async def _conn(self, t: ClusterTarget) -> _Conn:
        """How to reach ``t``; raises ClusterUnreachable."""
        if t.cluster is None:
            return self._local_conn(t.namespace)
        if self.clusters is None:
            if t.name == LOCAL and not (t.cluster.get("spec") or {}).get("kubeConfigSecret"):
                return self._local_conn(t.namespace)
            raise ClusterUnreachable(f"{t.describe()}: downstream clusters are not configured in this controller")
        c = await self.clusters.get(t.cluster)
        if c.local:
            return self._local_conn(t.namespace)
        kube = getattr(c, "kube", None) or Kube(c.api)
        return _Conn(c.name, c.namespace, c.driver, c.releases, c.api, kube, local=False)

    async def _cluster_objects(self, namespace: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lister = getattr(self.kube, "list_clusters", None)
        if lister is None:
            return [], []
        return await lister(namespace), await self.kube.list_cluster_groups(namespace)

    async def _targets(self, obj: Mapping[str, Any]) -> tuple[list[ClusterTarget], dict[str, dict[str, Any]]]:
        """The clusters the HelmApp deploys to, and the Cluster objects of its namespace by name."""
        ns = obj["metadata"]["namespace"]
        if not has_targets(obj) and not deployed_clusters(obj):
            return resolve_targets(obj), {}
        clusters, groups = await self._cluster_objects(ns)
        by_name = {str(c["metadata"]["name"]): c for c in clusters}
        return resolve_targets(obj, clusters, groups), by_name

    async def _remember(self, key: Key, names: set[str]) -> None:
        """Writes the deployed-clusters annotation (see helmops.clusters.resolve)."""
        patch = getattr(self.kube, "patch_annotations", None)
        if patch is not None:
            await patch(*key, {DEPLOYED_ANNOTATION: deployed_value(names)})

    @staticmethod
    def _remembered(obj: Mapping[str, Any]) -> set[str]:
        """The clusters the HelmApp may have releases on. Without the annotation, a HelmApp that was
        reconciled before (it has a status) was deployed to the local cluster, as helmops did before
        targeting; a new one nowhere yet."""
        if DEPLOYED_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
            return set(deployed_clusters(obj))
        status = obj.get("status") or {}
        return {LOCAL} if has_targets(obj) and (status.get("version") or status.get("summary")) else set()

    # --- deletion ----------------------------------------------------------------------------------
    async def _finalize(self, key: Key, obj: Mapping[str, Any]) -> float | None:
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return None
        obj = (await self._policy(obj)).apply(obj)  # a defaultServiceAccount acts for the deletion too
        try:
            targets, by_name = await self._targets(obj)
        except ValueError:
            targets, by_name = [], {}
        uid = helmapp_uid(obj)
        recorded = {e.cluster for e in await self.ledger.entries(uid)}
        names = {t.name for t in targets} | set(deployed_clusters(obj)) | recorded
        if not names:
            names = {LOCAL}
        todo: list[ClusterTarget] = [t for t in targets]
        for name in sorted(names - {t.name for t in targets}):
            cluster = by_name.get(name)
            if cluster is None and name != LOCAL:
                msg = (
                    f"cluster {name} in namespace {key[0]}: the Cluster object is gone; its release was not uninstalled"
                )
                log.warning("finalize %s/%s: %s", *key, msg)
                await self._events(obj, ActionResult(False, "ClusterGone", msg))
                continue
            spec = {k: v for k, v in (obj.get("spec") or {}).items() if k != "targets"}
            todo.append(ClusterTarget(name, key[0], cluster, {**obj, "spec": spec}, "", False))
        results = await asyncio.gather(*(self._finalize_cluster(key, obj, t) for t in todo))
        failed = [r for r in results if isinstance(r, ClusterOutcome)]
        waits = [r for r in results if isinstance(r, float)]
        if failed:
            gen = int(obj["metadata"].get("generation") or 0)
            await self._write_status(key, obj, Outcome(key[1], key[0], gen, State.ERR_APPLIED, clusters=tuple(failed)))
            return self._retry_in(key)
        if waits:
            return min(waits)
        await self.ledger.drop(uid)
        await self.kube.remove_finalizer(obj)
        self._ok(key)
        return None

    async def _finalize_cluster(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget
    ) -> ClusterOutcome | float | None:
        """Uninstalls the HelmApp's release(s) from one cluster: None when done, a wait in seconds, or the
        failure as a ClusterOutcome."""
        spec = t.helmapp.get("spec") or {}
        try:
            conn = await self._conn(t)
        except ClusterUnreachable as exc:
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=_plain(exc.message))
        try:
            return await self._finalize_on(key, obj, t, conn, spec)
        except Exception as exc:  # the API of that cluster failed: retry, naming it
            if conn.local:
                raise
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=f"unreachable: {_brief(exc)}")

    async def _finalize_on(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget, conn: _Conn, spec: Mapping[str, Any]
    ) -> ClusterOutcome | float | None:
        helmapp = t.helmapp
        name, ns = self.spec.release_name(helmapp), self.spec.release_namespace(helmapp)
        opts = helm_options(spec)
        opts["timeoutSeconds"] = clamp_timeout(opts["timeoutSeconds"], self.config.max_timeout_seconds)
        live = await conn.releases.read(ns, name)
        if live is not None and not labelled_ours(live, *key):
            log.warning("finalize %s/%s: %s; not uninstalled", *key, _not_ours(live))
            live = None
        c = classify(
            live,
            "",
            held=conn.driver.holds(ns, name),
            now=now_utc(),
            timeout_seconds=opts["timeoutSeconds"] or 300,
            grace_seconds=self.config.pending_grace_seconds,
        )
        d = decide(c, deleting=True, keep_resources=bool(spec.get("keepResources")), now=now_utc())
        _log_decision("finalize", key, ns, name, c, d, conn, t)
        if d.action is Action.WAIT:
            return d.wait_seconds
        if d.action is Action.UNINSTALL:
            res = await self._timed(
                "uninstall",
                uninstall(
                    conn.driver,
                    name,
                    ns,
                    timeout_seconds=opts["timeoutSeconds"],
                    service_account=opts["serviceAccount"] or None,
                    service_account_namespace=key[0],
                    tenant=key[0],
                ),
            )
            version = (obj.get("status") or {}).get("version")
            await self._events(obj, res, suffix=f" (chart version {version})" if version else "", conn=conn)
            if not res.ok:
                return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=res.error or res.message)
            await self.ledger.forget(helmapp_uid(obj), _helmapp(key), Entry(t.name, ns, name))
        if not spec.get("keepResources") and not await self._uninstall_orphans(
            obj, keep=None, conn=conn, cluster=t.name
        ):
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error="uninstalling old releases failed")
        target = spec.get("namespace") or ""
        if spec.get("deleteNamespace") and not spec.get("keepResources"):
            if namespace_deletable(target, own=self.config.own_namespace, extra=self.config.protected_namespaces):
                await self._delete_namespace(key, obj, t, conn, target)
            elif target:
                log.info("deleteNamespace: namespace %r is protected and was kept", target)
        return None

    async def _delete_namespace(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget, conn: _Conn, target: str
    ) -> None:
        """deleteNamespace, as the HelmApp's serviceAccount. A refusal (policy or RBAC) keeps the namespace
        and is reported (Event, log); it does not hold up the HelmApp's deletion."""
        policy = await self._policy(t.helmapp)
        if not policy.ok:
            msg = f"deleteNamespace: namespace {target} kept: {policy.message()}"
            log.warning("finalize %s/%s on %s: %s", *key, t.describe(), msg)
            await self._events(obj, ActionResult(False, "PolicyViolation", msg), conn=conn)
            return
        helmapp = policy.apply(t.helmapp)
        identity, kube = self._acting(helmapp, conn)
        try:
            deleted = await kube.delete_namespace(target)
        except Exception as exc:
            if not denied(exc):
                raise
            msg = "deleteNamespace: namespace kept, " + denial_message(identity, "delete", "namespaces", None, target)
            log.warning("finalize %s/%s on %s: %s", *key, t.describe(), msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            await self._events(obj, ActionResult(False, "AccessDenied", msg), conn=conn)
            return
        if deleted:
            log.info(
                "deleted namespace %s of HelmApp %s/%s on %s as %s", target, *key, t.describe(), identity.describe()
            )

    # --- identity and policy -----------------------------------------------------------------------
    def _api_as(self, helmapp: Mapping[str, Any], conn: _Conn) -> tuple[Identity, Any]:
        """The identity ``helmapp`` acts as and an ApiClient for it on ``conn``'s cluster (the connection's
        own client when the HelmApp has no serviceAccount)."""
        identity = Identity.of(helmapp)
        if conn.api is None:
            return identity, None
        cluster = LOCAL if conn.local else f"{conn.namespace}/{conn.name}"
        return identity, self.identities.api_for(conn.api, cluster, identity)

    def _acting(self, helmapp: Mapping[str, Any], conn: _Conn) -> tuple[Identity, Any]:
        """The identity and a Kube to change namespaces with on its behalf."""
        identity, api = self._api_as(helmapp, conn)
        if not identity.impersonated:
            return identity, conn.kube
        if api is None:
            return identity, _NoApi()
        return identity, self.kube_for(api)

    def identity_of(self, key: Key) -> Identity | None:
        """Who the HelmApp acted as at its last reconcile in this process (None: not reconciled yet)."""
        return self._identity.get(key)

    async def _policy(self, obj: Mapping[str, Any]) -> PolicyResult:
        """The operator policy for a HelmApp: GitRepoRestrictions of its namespace and the controller's
        --require-service-account (helmops.policy)."""
        items: list[dict[str, Any]] = []
        if self.restrictions is not None:
            try:
                items = await self.restrictions.list(obj["metadata"]["namespace"])
            except PolicyUnreadable as exc:
                return PolicyResult(violations=(Violation("policyUnreadable", str(exc)),))
        return evaluate(obj, aggregate(items), require_service_account=self.config.require_service_account)

    # --- normal reconcile --------------------------------------------------------------------------
    async def _reconcile(self, key: Key, obj: Mapping[str, Any]) -> float | None:
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            await self.kube.add_finalizer(obj)
            refreshed = await self.kube.get_helmapp(*key)
            if refreshed is None:
                return None
            obj = refreshed
        gen = int(obj["metadata"].get("generation") or 0)
        live_status: Mapping[str, Any] = obj.get("status") or {}

        problems = self.spec.problems(obj)
        if problems:
            outcome = Outcome(
                key[1],
                key[0],
                gen,
                State.ERR_APPLIED,
                accepted=False,
                accepted_error="invalid spec: " + "; ".join(problems),
                stalled=True,
            )
            await self._write_status(key, obj, outcome)
            await self._events(obj, ActionResult(False, "InvalidSpec", "invalid spec: " + "; ".join(problems)))
            return self._retry_in(key)

        # Operator policy, before anything runs: nothing is fetched, rendered or installed for a violation.
        policy = await self._policy(obj)
        if not policy.ok:
            msg = "policy violation: " + policy.message()
            log.warning("HelmApp %s/%s: %s", *key, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            outcome = Outcome(
                key[1], key[0], gen, State.ERR_APPLIED, accepted=False, accepted_error=msg, stalled=True
            )
            await self._write_status(key, obj, outcome)
            await self._events(obj, ActionResult(False, "PolicyViolation", msg))
            return self._retry_in(key)
        obj = policy.apply(obj)
        self._identity[key] = Identity.of(obj)

        try:
            targets, by_name = await self._targets(obj)
        except ValueError as exc:
            outcome = Outcome(
                key[1], key[0], gen, State.ERR_APPLIED, accepted=False, accepted_error=str(exc), stalled=True
            )
            await self._write_status(key, obj, outcome)
            return self._retry_in(key)
        # Remember every targeted cluster before touching it, so a crash cannot lose track of a release.
        remembered = self._remembered(obj)
        tracked = has_targets(obj) or DEPLOYED_ANNOTATION in (obj["metadata"].get("annotations") or {})
        known = set(deployed_clusters(obj))
        if tracked and remembered | {t.name for t in targets} != known:
            known = remembered | {t.name for t in targets}
            await self._remember(key, known)

        charts: dict[str, Any] = {}
        if targets:
            # The chart of the first cluster, resolved before any helm action so GotNewChartVersion precedes
            # the Upgraded Events (per-cluster fetches reuse it, errors included).
            ref = _chart_ref(targets[0].helmapp)
            charts[ref] = asyncio.ensure_future(self.charts.fetch(targets[0].helmapp))
            try:
                first: FetchedChart | None = await asyncio.shield(charts[ref])
            except Exception:
                first = None
            old_version = live_status.get("version")
            if first is not None and old_version and old_version != first.version:
                await self.kube.event(
                    obj,
                    "GotNewChartVersion",
                    f"chart {first.name} version {first.version} (was {old_version}), digest {first.digest}",
                )
        results = await asyncio.gather(*(self._reconcile_cluster(key, obj, t, charts) for t in targets))

        stale = sorted(remembered - {t.name for t in targets})
        kept = await self._cleanup(key, obj, stale, by_name) if stale else set()
        if tracked and {t.name for t in targets} | kept != known:
            await self._remember(key, {t.name for t in targets} | kept)

        outcomes = tuple(r.outcome for r in results)
        not_accepted = next((r for r in results if r.accepted_error), None)
        version = next((r.version for r in results if r.version), None)
        outcome = Outcome(
            key[1],
            key[0],
            gen,
            State.READY,
            accepted=not_accepted is None,
            accepted_error=not_accepted.accepted_error if not_accepted else None,
            accepted_cluster=(not_accepted.outcome.namespace, not_accepted.outcome.name) if not_accepted else None,
            stalled=any(r.stalled for r in results),
            version=version,
            clusters=outcomes,
        )
        await self._write_status(key, obj, outcome)
        delays = [r.delay for r in results if r.delay is not None]
        if any(r.failed for r in results):
            delays.append(self._retry_in(key))
        else:
            self._ok(key)
        if not delays:
            return self.config.resync_seconds
        return min(delays)

    async def _cleanup(
        self, key: Key, obj: Mapping[str, Any], stale: Sequence[str], by_name: Mapping[str, Mapping[str, Any]]
    ) -> set[str]:
        """Releases on clusters no longer targeted are uninstalled (unless keepResources). Returns the names
        still to be cleaned up later (unreachable clusters)."""
        spec = obj.get("spec") or {}
        kept: set[str] = set()
        for name in stale:
            where = f"cluster {name} in namespace {key[0]}"
            cluster = by_name.get(name)
            if cluster is None and name != LOCAL:
                msg = f"{where}: the Cluster object is gone; its release was not uninstalled (cannot be reached)"
                log.warning("HelmApp %s/%s: %s", *key, msg)
                await self._events(obj, ActionResult(False, "ClusterGone", msg))
                if self.clusters is not None:
                    await self.clusters.forget(key[0], name)
                continue
            if spec.get("keepResources"):
                log.info("HelmApp %s/%s no longer targets %s; keepResources: release kept", *key, where)
                continue
            base = {k: v for k, v in spec.items() if k != "targets"}
            t = ClusterTarget(name, key[0], cluster, {**obj, "spec": base}, "", False)
            try:
                conn = await self._conn(t)
                current = Entry(name, self.spec.release_namespace(t.helmapp), self.spec.release_name(t.helmapp))
                clean = await self._uninstall_orphans(obj, keep=None, conn=conn, cluster=name, current=current)
            except ClusterUnreachable as exc:
                log.warning("HelmApp %s/%s: no longer targeted, cleanup postponed: %s", *key, exc.message)
                clean = False
            except Exception as exc:
                log.warning("HelmApp %s/%s: no longer targets %s, cleanup postponed: %s", *key, where, _brief(exc))
                clean = False
            if not clean:
                kept.add(name)
        return kept

    async def _reconcile_cluster(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget, charts: dict[str, Any]
    ) -> _ClusterResult:
        try:
            conn = await self._conn(t)
        except ClusterUnreachable as exc:
            log.warning("HelmApp %s/%s: %s", *key, exc.message, extra={"helmapp": f"{key[0]}/{key[1]}"})
            # the message names the cluster (and a refused kubeconfig's field, never a value)
            await self._events(obj, ActionResult(False, "ClusterUnreachable", exc.message))
            outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=_plain(exc.message))
            return _ClusterResult(outcome, failed=True)
        try:
            return await self._reconcile_on(key, obj, t, conn, charts)
        except Exception as exc:
            if conn.local:
                raise
            # One cluster's API failing never blocks the others: report it, retry with backoff.
            log.warning("HelmApp %s/%s: %s unreachable: %s", *key, t.describe(), _brief(exc))
            outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=f"unreachable: {_brief(exc)}")
            return _ClusterResult(outcome, failed=True)

    async def _reconcile_on(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget, conn: _Conn, charts: dict[str, Any]
    ) -> _ClusterResult:
        def out(state: State, **kw: Any) -> ClusterOutcome:
            return ClusterOutcome(t.name, t.namespace, state, **kw)

        try:
            desired = await self._desired(t, conn, charts)
        except DesiredError as exc:
            log.warning(
                # the error text already names the cluster, as Fleet words it
                "HelmApp %s/%s not accepted: %s", *key, exc, extra={"helmapp": f"{key[0]}/{key[1]}"}
            )
            await self._events(obj, ActionResult(False, "NotAccepted", _plain(exc.message)), conn=conn)
            return _ClusterResult(
                out(State.ERR_APPLIED, error=_plain(exc.message)),
                failed=True,
                accepted_error=_plain(exc.message),
                stalled=not exc.retryable,
            )

        chart = desired.chart
        rel = desired.release
        await self._say_clamped(key, obj, desired, conn)
        live = await conn.releases.read(rel.namespace, rel.name)
        uid, entry = helmapp_uid(obj), Entry(t.name, rel.namespace, rel.name)
        recorded = entry in await self.ledger.entries(uid)
        own = ownership(live, *key, recorded=recorded, take_ownership=rel.take_ownership)
        if not own.allowed:
            return await self._refused(key, obj, t, conn, own.refusal, chart.version, "ReleaseNotOwned")
        if own.adopt:
            log.info("HelmApp %s/%s adopts %s (takeOwnership)", *key, entry.describe(), extra=_extra(key, t))
        now = now_utc()
        c = classify(
            live,
            desired.fingerprint,
            held=conn.driver.holds(rel.namespace, rel.name),
            now=now,
            timeout_seconds=rel.timeout_seconds or 300,
            grace_seconds=self.config.pending_grace_seconds,
        )
        d = decide(c, deleting=False, keep_resources=False, now=now)
        _log_decision(
            "reconcile", key, rel.namespace, rel.name, c, d, conn, t,
            chart=chart.name, chartVersion=chart.version, fingerprint=desired.fingerprint,
        )  # fmt: skip

        def done(state: State, delay: float | None, **kw: Any) -> _ClusterResult:
            return _ClusterResult(out(state, **kw), delay=delay, version=chart.version, chart=chart)

        spec = t.helmapp.get("spec") or {}
        if not recorded and live is not None and labelled_ours(live, *key):
            # a release installed before the ledger existed: recorded the first time it is seen
            try:
                await self.ledger.record(uid, _helmapp(key), entry)
                recorded = True
            except LedgerFull as exc:
                return await self._refused(key, obj, t, conn, str(exc), chart.version, "TooManyReleases")
        if d.action is Action.NONE:
            if (refused := await self._namespace_metadata(t.helmapp, rel.namespace, conn)) is not None:
                return _ClusterResult(out(State.ERR_APPLIED, error=refused), failed=True, version=chart.version)
            drifted = self.drift(key) if self.drift is not None and conn.local else ""
            if drifted:
                return done(State.MODIFIED, self.config.resync_seconds, message=drifted)
            revision = live.revision if live is not None else None
            return await self._ready(key, t, conn, rel.namespace, rel.name, chart, revision)
        if d.action is Action.WAIT:
            return done(State.WAIT_APPLIED, d.wait_seconds, message=d.reason)
        if t.paused:
            # Fleet: a paused HelmApp's (or Cluster's) deployment is not updated, only reported as out of sync.
            what = "HelmApp" if spec.get("paused") else "Cluster"
            note = f"paused ({what}): release is {c.phase}, {d.action} skipped"
            return done(State.OUT_OF_SYNC, self.config.resync_seconds, message=note)

        if not recorded:
            # before helm touches it: a crash after this line cannot lose track of the release
            try:
                await self.ledger.record(uid, _helmapp(key), entry)
            except LedgerFull as exc:
                return await self._refused(key, obj, t, conn, str(exc), chart.version, "TooManyReleases")
        # helm's --create-namespace needs cluster-wide `create namespaces` even when the namespace exists; a
        # serviceAccount confined to its own namespace could then never deploy there.
        confined = d.action in (Action.INSTALL, Action.UPGRADE) and rel.service_account and rel.create_namespace
        if confined and await conn.kube.namespace_exists(rel.namespace):
            desired = dataclasses.replace(desired, release=dataclasses.replace(rel, create_namespace=False))
        res = await self._act(d.action, desired, c, conn.driver)
        if d.action is Action.INSTALL and not res.ok and await conn.releases.read(rel.namespace, rel.name) is None:
            await self.ledger.forget(uid, _helmapp(key), entry)  # nothing was created
        if d.action is Action.RECOVER and not res.ok:
            res = await self._recovered_anyway(rel.namespace, rel.name, res, conn.releases)
        await self._events(obj, res, suffix=f" (chart {chart.name} {chart.version}, digest {chart.digest})", conn=conn)
        if not res.ok:
            # The last good release keeps running: nothing is uninstalled or rolled back on our side.
            r = done(State.ERR_APPLIED, None, error=res.error or res.message)
            r.failed = True
            return r
        if d.action is Action.RECOVER:
            return done(State.WAIT_APPLIED, 0.1, message=res.message)
        refused = await self._namespace_metadata(t.helmapp, rel.namespace, conn)
        await self._uninstall_orphans(obj, keep=(rel.namespace, rel.name), conn=conn, cluster=t.name)
        if refused is not None:
            return _ClusterResult(out(State.ERR_APPLIED, error=refused), failed=True, version=chart.version)
        return await self._ready(key, t, conn, rel.namespace, rel.name, chart, res.revision)

    async def _ready(
        self,
        key: Key,
        t: ClusterTarget,
        conn: _Conn,
        namespace: str,
        name: str,
        chart: FetchedChart,
        revision: int | None = None,
    ) -> _ClusterResult:
        """Ready, or NotReady while objects of the release are not (checked only with a LiveResources).
        ``revision``: the deployed revision when known (saves reading the release again)."""
        resources = None
        if self.live is not None and conn.api is not None:
            # The objects a release lists are read as the HelmApp's serviceAccount: the release record is
            # writable by whoever can write Secrets in the release namespace, so it may name anything.
            identity, api = self._api_as(t.helmapp, conn)
            try:
                if not revision:
                    info = await conn.releases.read(namespace, name)
                    revision = info.revision if info is not None else None
                if revision:
                    resources = await self.live.states(api, conn.core, t.id, namespace, name, revision)
                    refused = [r for r in resources if r.message.startswith(ACCESS_DENIED)]
                    if refused and identity.impersonated:
                        first = refused[0]
                        msg = (
                            f"readiness of release {namespace}/{name}: {identity.describe()} may not get "
                            f"{len(refused)} of its objects (e.g. {first.kind} {first.name}"
                            f"{' in namespace ' + first.namespace if first.namespace else ''}); they count as Unknown"
                        )
                        log.warning("HelmApp %s/%s on %s: %s", *key, t.describe(), msg)
                        await self._events(t.helmapp, ActionResult(False, "AccessDenied", msg), conn=conn)
            except (TimeoutError, OSError, aiohttp.ClientError):
                if not conn.local:
                    raise  # the cluster went away: reported as unreachable by the caller
                log.warning("HelmApp %s/%s: resource states not read on %s", *key, t.describe())
            except Exception as exc:
                log.warning("HelmApp %s/%s: resource states not read on %s: %s", *key, t.describe(), _brief(exc))
        bad = [r for r in resources or () if r.state != "Ready"]
        rkey = (key[0], key[1], t.id)
        if bad:
            n = self._not_ready.get(rkey, 0) + 1
            self._not_ready[rkey] = n
            delay = min(self.config.resync_seconds, backoff(n, base=self.config.backoff_base_seconds, cap=60.0))
            state = State.NOT_READY
        else:
            self._not_ready.pop(rkey, None)
            delay, state = self.config.resync_seconds, State.READY
        outcome = ClusterOutcome(t.name, t.namespace, state, resources=resources)
        return _ClusterResult(outcome, delay=delay, version=chart.version, chart=chart)

    async def _uninstall_orphans(
        self,
        obj: Mapping[str, Any],
        keep: tuple[str, str] | None,
        conn: _Conn,
        cluster: str,
        current: Entry | None = None,
    ) -> bool:
        """Uninstalls this HelmApp's releases on ``conn``'s cluster other than ``keep`` (left behind when
        spec.helm.releaseName or the namespace changed, or the cluster is no longer targeted). Only releases
        the ledger recorded are considered (plus ``current``, the release a cluster no longer targeted would
        have now, for releases installed before the ledger existed), and each only while its storage labels
        still name this HelmApp: a Secret a tenant planted elsewhere is never listed, let alone acted on.
        True when none is left."""
        key = _key(obj)
        uid = helmapp_uid(obj)
        spec = obj.get("spec") or {}
        candidates = {e for e in await self.ledger.entries(uid) if e.cluster == cluster}
        if current is not None and current.cluster == cluster:
            candidates.add(current)
        clean = True
        for entry in sorted(candidates):
            if (entry.namespace, entry.name) == keep:
                continue
            if conn.driver.holds(entry.namespace, entry.name):
                clean = False  # a helm process of ours works on it: look again next time
                continue
            live = await conn.releases.read(entry.namespace, entry.name)
            if live is None or not labelled_ours(live, *key):
                if live is not None:
                    log.warning("HelmApp %s/%s: %s; not uninstalled", *key, _not_ours(live), extra=_extra(key))
                await self.ledger.forget(uid, _helmapp(key), entry)
                continue
            res = await self._timed(
                "uninstall",
                uninstall(
                    conn.driver,
                    entry.name,
                    entry.namespace,
                    timeout_seconds=clamp_timeout(
                        int((spec.get("helm") or {}).get("timeoutSeconds") or 0), self.config.max_timeout_seconds
                    ),
                    service_account=spec.get("serviceAccount") or None,
                    service_account_namespace=key[0],
                    tenant=key[0],
                ),
            )
            if res.ok:
                res = ActionResult(True, "Uninstalled", f"{res.message}: no longer this HelmApp's release")
                await self.ledger.forget(uid, _helmapp(key), entry)
            clean = clean and res.ok
            await self._events(obj, res, conn=conn)
        return clean

    async def _refused(
        self, key: Key, obj: Mapping[str, Any], t: ClusterTarget, conn: _Conn, msg: str, version: str, reason: str
    ) -> _ClusterResult:
        """Not accepted on this cluster: status condition, Event and log line; the release is not touched."""
        log.warning("HelmApp %s/%s not accepted on %s: %s", *key, t.describe(), msg, extra=_extra(key, t))
        await self._events(obj, ActionResult(False, reason, msg), conn=conn)
        outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=msg)
        return _ClusterResult(outcome, failed=True, accepted_error=msg, stalled=True, version=version)

    async def _namespace_metadata(self, obj: Mapping[str, Any], namespace: str, conn: _Conn) -> str | None:
        """Fleet's namespaceLabels/namespaceAnnotations, applied to the release namespace (added or
        overwritten, never removed) as the HelmApp's serviceAccount. Returns why it was refused (reported as
        an Event and a log line here), None when done."""
        spec = obj.get("spec") or {}
        labels, annotations = spec.get("namespaceLabels") or {}, spec.get("namespaceAnnotations") or {}
        if not labels and not annotations:
            return None
        identity, kube = self._acting(obj, conn)
        try:
            changed = await kube.ensure_namespace_metadata(namespace, labels, annotations)
        except Exception as exc:
            if not denied(exc):
                raise
            msg = "namespaceLabels/namespaceAnnotations not applied, " + denial_message(
                identity, "get/patch", "namespaces", None, namespace
            )
            key = _key(obj)
            where = "" if conn.local else f" on cluster {conn.name} in namespace {conn.namespace}"
            log.warning("HelmApp %s/%s%s: %s", *key, where, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            await self._events(obj, ActionResult(False, "AccessDenied", msg), conn=conn)
            return msg
        if changed:
            log.info(
                "labelled/annotated namespace %s for HelmApp %s/%s as %s", namespace, *_key(obj), identity.describe()
            )
        return None

    async def _recovered_anyway(
        self, namespace: str, name: str, res: ActionResult, releases: ReleaseReader
    ) -> ActionResult:
        """A rollback out of pending-* can fail (helm will not adopt objects the pending manifest lacks) yet
        still leave the release proceedable (``failed``): then the stuck state is gone and the next
        reconcile upgrades it like any failed release."""
        after = await releases.read(namespace, name)
        if after is not None and after.status.startswith("pending-"):
            return res
        state = after.status if after else "absent"
        return ActionResult(
            True,
            "ReleaseRecovered",
            f"release {namespace}/{name} is no longer stuck (now {state}, revision "
            f"{after.revision if after else '-'}); {res.message}",
            revision=after.revision if after else None,
        )

    async def _desired(self, t: ClusterTarget, conn: _Conn, charts: dict[str, Any]) -> Desired:
        """The release for one cluster. Charts are fetched once per distinct chart reference per reconcile
        (targets may override helm.version)."""
        helmapp = t.helmapp
        name, ns = self.spec.release_name(helmapp), self.spec.release_namespace(helmapp)
        ref = _chart_ref(helmapp)
        if ref not in charts:
            charts[ref] = asyncio.ensure_future(self.charts.fetch(helmapp))
        chart: FetchedChart = await asyncio.shield(charts[ref])
        render_for = getattr(self.values, "render_for", None)
        identity, api = self._api_as(helmapp, conn)
        if render_for is not None and identity.impersonated and api is not None:
            # valuesFrom is read as the serviceAccount, on the cluster the release goes to.
            values = await render_for(helmapp, ns, t.cluster, api)
        elif render_for is not None and not (t.cluster is None and conn.local):
            values = await render_for(helmapp, ns, t.cluster, None if conn.local else conn.api)
        else:
            # The controller's own identity: the renderer reads only the HelmApp's own namespace.
            values = await self.values.render_values(helmapp, ns)
        return build_release(
            helmapp,
            release_name=name,
            release_namespace=ns,
            chart=chart,
            values=values,
            max_timeout=self.config.max_timeout_seconds,
        )

    async def _say_clamped(self, key: Key, obj: Mapping[str, Any], desired: Desired, conn: _Conn) -> None:
        """One Event (and log line) per HelmApp, cluster and requested value when the cap lowered the timeout."""
        requested = desired.timeout_clamped_from
        where = (key[0], key[1], conn.name)
        if requested is None:
            self._clamp_said.pop(where, None)
            return
        if self._clamp_said.get(where) == requested:
            return
        self._clamp_said[where] = requested
        msg = clamp_notice(requested, self.config.max_timeout_seconds) or ""
        log.warning("HelmApp %s/%s on %s: %s", *key, conn.name, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
        await self._events(obj, ActionResult(False, "TimeoutClamped", msg), conn=conn)

    async def _act(self, action: Action, desired: Desired, c: Any, driver: HelmDriver) -> ActionResult:
        rel = desired.release
        if action is Action.INSTALL:
            return await self._timed("install", install(driver, rel, take_ownership=rel.take_ownership))
        if action is Action.UPGRADE:
            return await self._timed("upgrade", upgrade(driver, rel))
        if action is Action.RECOVER:
            return await self._timed(
                "recover",
                recover(
                    driver,
                    c,
                    timeout_seconds=rel.timeout_seconds,
                    service_account=rel.service_account,
                    service_account_namespace=rel.service_account_namespace,
                    history_max=rel.history_max,
                    tenant=rel.slot_tenant,
                ),
            )
        raise AssertionError(f"unexpected action {action}")

    async def _timed(self, action: str, coro: Any) -> ActionResult:
        start = time.monotonic()
        metrics.HELM_ACTIVE.inc()
        try:
            res: ActionResult = await coro
        finally:
            metrics.HELM_ACTIVE.dec()
            metrics.HELM_ACTION_SECONDS.labels(action).observe(time.monotonic() - start)
        outcome = "success" if res.ok else "failure"
        metrics.HELM_ACTIONS.labels(action, outcome).inc()
        metrics.HELM_OUTCOME_SECONDS.labels(action, outcome).observe(time.monotonic() - start)
        return res

    async def _events(
        self, obj: Mapping[str, Any], res: ActionResult, suffix: str = "", conn: _Conn | None = None
    ) -> None:
        """Events on the HelmApp; for a cluster other than the local one the message names it."""
        where = "" if conn is None or conn.local else f"cluster {conn.name} in namespace {conn.namespace}: "
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"], where)
        now = time.monotonic()
        last = self._last_event.get(key)
        if last and last[:2] == (res.reason, res.message) and now - last[2] < EVENT_REPEAT_SECONDS:
            return  # the same outcome again on retry: one Event (set) per EVENT_REPEAT_SECONDS is enough
        self._last_event[key] = (res.reason, res.message, now)
        if res.reason:
            await self.kube.event(obj, res.reason, where + res.message + suffix, warning=not res.ok)
        for reason, message in res.extra_events:
            await self.kube.event(obj, reason, where + message + suffix, warning=True)

    async def _write_status(self, key: Key, obj: Mapping[str, Any], outcome: Outcome) -> None:
        live = obj.get("status") or {}
        desired = compute_status(outcome, live, now_utc())
        if not status_changed(live, desired):
            return
        out = await self.kube.patch_status(key[0], key[1], status_patch(live, desired))
        if out is None:
            log.debug("HelmApp %s/%s vanished before its status was written", *key)


@dataclass
class _Conn:
    """One cluster as the reconciler uses it (the local one, or a helmops.clusters Connection)."""

    name: str
    namespace: str
    driver: Any
    releases: ReleaseReader
    api: Any
    kube: Any
    local: bool = False

    @property
    def core(self) -> Any:
        return getattr(self.releases, "_core", None) or getattr(self.kube, "core", None)


class _NoApi:
    """Stands in when a serviceAccount must act but no API client exists to impersonate it with: every
    change is refused as a 403 would be."""

    async def delete_namespace(self, name: str) -> bool:
        raise _Denied()

    async def ensure_namespace_metadata(self, name: str, labels: Any, annotations: Any) -> bool:
        raise _Denied()


class _Denied(Exception):
    status = 403


@dataclass
class _ClusterResult:
    outcome: ClusterOutcome
    delay: float | None = None
    failed: bool = False
    accepted_error: str | None = None
    stalled: bool = False
    version: str | None = None
    chart: FetchedChart | None = None


def _brief(exc: BaseException) -> str:
    """A one-line, secret-free description of an API/connection failure."""
    status = getattr(exc, "status", None)
    if status is not None and getattr(exc, "reason", None):
        return f"{status} {exc.reason}"  # type: ignore[attr-defined]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _chart_ref(helmapp: Mapping[str, Any]) -> str:
    """What identifies a chart fetch (targets may override helm.version/repo/chart)."""
    spec = helmapp.get("spec") or {}
    helm = spec.get("helm") or {}
    return json.dumps(
        [helm.get("repo"), helm.get("chart"), str(helm.get("version") or ""), spec.get("helmSecretName")],
        default=str,
    )


def _key(obj: Mapping[str, Any]) -> Key:
    return (obj["metadata"]["namespace"], obj["metadata"]["name"])


def _helmapp(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def _extra(key: Key, t: ClusterTarget | None = None) -> dict[str, str]:
    """Structured log fields naming the HelmApp (and the cluster)."""
    out = {"helmapp": _helmapp(key)}
    if t is not None:
        out["cluster"] = t.id
    return out


def _not_ours(live: ReleaseInfo) -> str:
    """Why a live release is not this HelmApp's to uninstall."""
    where = f"release {live.name} in namespace {live.namespace}"
    owner = live.labels.get(OWNER_LABEL)
    return f"{where} belongs to another HelmApp ({owner})" if owner else f"{where} was not installed by this HelmApp"


def _plain(message: str) -> str:
    """Messages from the values package may already name the cluster; status adds the prefix itself."""
    if message.startswith("cluster ") and ": " in message:
        return message.split(": ", 1)[1]
    return message


__all__ = [
    "PROTECTED_NAMESPACES",
    "SHARD_LABEL",
    "Key",
    "Reconciler",
    "ReconcilerConfig",
    "in_shard",
    "namespace_deletable",
]


def _log_decision(
    verb: str, key: Key, ns: str, name: str, c: Classification, d: Decision, conn: _Conn, t: ClusterTarget, **extra: str
) -> None:
    """One structured line per decision, the same for reconcile and finalize."""
    log.info(
        "%s %s/%s: release %s/%s %s -> %s (%s)%s",
        verb, *key, ns, name, c.phase, d.action, d.reason, "" if conn.local else f" on {t.describe()}",
        extra={
            "helmapp": f"{key[0]}/{key[1]}",
            "release": f"{ns}/{name}",
            "phase": str(c.phase),
            "action": str(d.action),
            **extra,
            "cluster": t.id,
        },
    )  # fmt: skip
