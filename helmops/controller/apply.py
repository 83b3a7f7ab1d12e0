"""One HelmApp on one cluster: desired release → classify (drift included) → decide → at most one action
through the executor → readiness. Returns what status needs; never raises for the cluster's own failures
(an unreachable downstream cluster is an outcome, not an exception)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

import aiohttp

from helmops import tasks
from helmops.api.keys import LOCAL, Key
from helmops.api.objects import HelmApp
from helmops.clusters.connections import ClusterUnreachable
from helmops.clusters.identity import denial_message, denied
from helmops.clusters.live import ACCESS_DENIED
from helmops.controller.connect import Conn, brief, chart_ref, helmapp_name, key_of, log_extra, plain
from helmops.controller.ledger import Entry, LedgerFull, helmapp_uid
from helmops.controller.rollout import RolloutControl
from helmops.desired.pipeline import plan_target, release_for
from helmops.desired.release import ChartFetcher, Desired, DesiredError, FetchedChart, clamp_notice
from helmops.desired.targets import ClusterTarget
from helmops.reconcile import Action, ActionResult, backoff, classify, decide
from helmops.reconcile.executor import log_decision
from helmops.reconcile.release import labelled_ours, ownership
from helmops.reconcile.step import HelmCall, Step
from helmops.status import ClusterOutcome, State, now_utc

log = logging.getLogger("helmops.controller")


class ChartFetches:
    """The charts of one reconcile: each distinct chart reference (targets may override helm.version) is
    fetched once, errors included, and shared by the clusters that need it."""

    def __init__(self, fetcher: ChartFetcher) -> None:
        self._fetcher = fetcher
        self._fetches: dict[str, asyncio.Task[tuple[FetchedChart | None, Exception | None]]] = {}

    async def get(self, helmapp: HelmApp) -> FetchedChart:
        ref = chart_ref(helmapp)
        if ref not in self._fetches:
            self._fetches[ref] = tasks.shared(lambda: self._fetcher.fetch(helmapp))
        return await tasks.outcome(self._fetches[ref])

    def cancel(self) -> None:
        """The reconcile is over (or cancelled): no fetch of it outlives it."""
        for fetch in self._fetches.values():
            fetch.cancel()


@dataclass
class ClusterResult:
    outcome: ClusterOutcome
    delay: float | None = None
    failed: bool = False
    accepted_error: str | None = None
    stalled: bool = False
    version: str | None = None
    chart: FetchedChart | None = None


class Apply(RolloutControl):
    async def _reconcile_cluster(self, key: Key, obj: HelmApp, t: ClusterTarget, charts: ChartFetches) -> ClusterResult:
        try:
            conn = await self.connect.to(t)
        except ClusterUnreachable as exc:
            log.warning("HelmApp %s/%s: %s", *key, exc.message, extra=log_extra(key))
            # the message names the cluster (and a refused kubeconfig's field, never a value)
            await self._events(obj, ActionResult(False, exc.reason, exc.message))
            outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=plain(exc.message))
            return ClusterResult(outcome, failed=True)
        try:
            return await self._reconcile_on(key, obj, t, conn, charts)
        except Exception as exc:
            if conn.local:
                raise
            # One cluster's API failing never blocks the others: report it, retry with backoff.
            log.warning("HelmApp %s/%s: %s unreachable: %s", *key, t.describe(), brief(exc))
            outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=f"unreachable: {brief(exc)}")
            return ClusterResult(outcome, failed=True)

    async def _reconcile_on(
        self, key: Key, obj: HelmApp, t: ClusterTarget, conn: Conn, charts: ChartFetches
    ) -> ClusterResult:
        def out(state: State, *, error: str | None = None, message: str | None = None) -> ClusterOutcome:
            return ClusterOutcome(t.name, t.namespace, state, error=error, message=message)

        try:
            desired = await self._desired(t, conn, charts)
        except DesiredError as exc:
            # the error text already names the cluster, as Fleet words it
            log.warning("HelmApp %s/%s not accepted: %s", *key, exc, extra=log_extra(key))
            await self._events(obj, ActionResult(False, "NotAccepted", plain(exc.message)), conn=conn)
            return ClusterResult(
                out(State.ERR_APPLIED, error=plain(exc.message)),
                failed=True,
                accepted_error=plain(exc.message),
                stalled=not exc.retryable,
            )

        chart = desired.chart
        rel = desired.release
        await self._say_clamped(key, obj, desired, conn)
        live = await conn.releases.read(rel.namespace, rel.name)
        uid, entry = helmapp_uid(obj), Entry(t.name, rel.namespace, rel.name)
        recorded = entry in await self.ledger.entries(uid)
        own = ownership(live, *key, recorded=recorded, take_ownership=rel.take_ownership)
        drift_cluster = LOCAL if conn.local else f"{conn.namespace}/{conn.name}"
        if self.drift is not None and not conn.local and conn.api is not None:
            self.drift.attach(drift_cluster, conn.api, conn.driver.holds)
        if not own.allowed:
            return await self._refused(key, obj, t, conn, own.refusal, chart.version, "ReleaseNotOwned")
        if own.adopt:
            log.info("HelmApp %s/%s adopts %s (takeOwnership)", *key, entry.describe(), extra=log_extra(key, t))
        spec = t.spec
        correct = spec.correct_drift
        now = now_utc()
        c = classify(
            live,
            desired.fingerprint,
            held=conn.driver.holds(rel.namespace, rel.name),
            now=now,
            timeout_seconds=rel.timeout_seconds or 300,
            grace_seconds=self.config.pending_grace_seconds,
            drift=self.drift.drifted(key, drift_cluster) if self.drift is not None else "",
        )
        d = decide(
            c, deleting=False, keep_resources=False, now=now,
            correct_drift=correct.enabled and not spec.paused,
        )  # fmt: skip
        log_decision(
            "reconcile", key, rel.namespace, rel.name, c, d, cluster=t.id, where=conn.where,
            chart=chart.name, chartVersion=chart.version, fingerprint=desired.fingerprint,
        )  # fmt: skip

        def done(
            state: State, delay: float | None, *, error: str | None = None, message: str | None = None
        ) -> ClusterResult:
            return ClusterResult(
                out(state, error=error, message=message), delay=delay, version=chart.version, chart=chart
            )

        # rollout (issue 17): dependsOn and rolloutStrategy may hold an install/upgrade back on this cluster
        if (held := await self._rollout_hold(key, obj, t, c, d)) is not None:
            if held.state is State.ERR_APPLIED:
                return done(held.state, held.delay, error=held.message)
            return done(held.state, held.delay, message=held.message)
        if not recorded and live is not None and labelled_ours(live, *key):
            # a release installed before the ledger existed: recorded the first time it is seen
            try:
                await self.ledger.record(uid, helmapp_name(key), entry)
                recorded = True
            except LedgerFull as exc:
                return await self._refused(key, obj, t, conn, str(exc), chart.version, "TooManyReleases")
        if d.action is Action.NONE:
            if (refused := await self._namespace_metadata(t.helmapp, rel.namespace, conn)) is not None:
                return ClusterResult(out(State.ERR_APPLIED, error=refused), failed=True, version=chart.version)
            revision = live.revision if live is not None else None
            ready = await self._ready(key, t, conn, rel.namespace, rel.name, chart, revision)
            if c.drift:
                # Modified, with the objects' readiness still counted (a deleted object is also `missing`)
                ready.outcome = dataclasses.replace(ready.outcome, state=State.MODIFIED, message=c.drift, error=None)
                ready.delay = self.config.resync_seconds
            return ready
        if d.action is Action.WAIT:
            return done(State.WAIT_APPLIED, d.wait_seconds, message=d.reason)
        if t.paused:
            # Fleet: a paused HelmApp's (or Cluster's) deployment is not updated, only reported as out of sync.
            what = "HelmApp" if spec.paused else "Cluster"
            note = f"paused ({what}): release is {c.phase}, {d.action} skipped"
            return done(State.OUT_OF_SYNC, self.config.resync_seconds, message=note)

        if not recorded:
            # before helm touches it: a crash after this line cannot lose track of the release
            try:
                await self.ledger.record(uid, helmapp_name(key), entry)
            except LedgerFull as exc:
                return await self._refused(key, obj, t, conn, str(exc), chart.version, "TooManyReleases")
        # helm's --create-namespace needs cluster-wide `create namespaces` even when the namespace exists; a
        # serviceAccount confined to its own namespace could then never deploy there.
        confined = d.action in (Action.INSTALL, Action.UPGRADE) and rel.service_account and rel.create_namespace
        if confined and await conn.kube.namespace_exists(rel.namespace):
            rel = dataclasses.replace(rel, create_namespace=False)
        step = Step(
            "reconcile", key, t.id, conn.where, rel.namespace, rel.name, c, d, HelmCall.of(rel), spec=rel,
            force=correct.force, keep_fail_history=correct.keep_fail_history,
            event_suffix="" if d.action is Action.CORRECT_DRIFT
            else f" (chart {chart.name} {chart.version}, digest {chart.digest})",
        )  # fmt: skip
        res = await self.executor.run(step, conn.tools, self._report(obj, conn))
        if res.held:  # helmops.promotion: held by a gate (approval, window) is waiting, not failing
            return done(State.WAIT_APPLIED, self.config.resync_seconds, message=res.message)
        if d.action is Action.INSTALL and not res.ok and await conn.releases.read(rel.namespace, rel.name) is None:
            await self.ledger.forget(uid, helmapp_name(key), entry)  # nothing was created
        if d.action is Action.CORRECT_DRIFT:
            if not res.ok:  # the release itself is as deployed; its objects still drift
                r = done(State.MODIFIED, None, message=c.drift)
                r.failed = True
                return r
            if self.drift is not None:
                self.drift.cleared(key, drift_cluster)
            return await self._ready(key, t, conn, rel.namespace, rel.name, chart)
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
            return ClusterResult(out(State.ERR_APPLIED, error=refused), failed=True, version=chart.version)
        return await self._ready(key, t, conn, rel.namespace, rel.name, chart, res.revision, applied=res.manifest)

    async def _ready(
        self,
        key: Key,
        t: ClusterTarget,
        conn: Conn,
        namespace: str,
        name: str,
        chart: FetchedChart,
        revision: int | None = None,
        *,
        applied: str | None = None,
    ) -> ClusterResult:
        """Ready, or NotReady while objects of the release are not (checked only with a LiveResources).
        ``revision``: the deployed revision when known (saves reading the release again); ``applied``: the
        manifest helm printed when it installed or upgraded to that revision just now."""
        resources = None
        if self.live is not None and conn.api is not None:
            # The objects a release lists are read as the HelmApp's serviceAccount: the release record is
            # writable by whoever can write Secrets in the release namespace, so it may name anything.
            identity, api = self.connect.api_as(t.helmapp, conn)
            try:
                if not revision:
                    info = await conn.releases.read(namespace, name)
                    revision = info.revision if info is not None else None
                if revision and applied is not None:
                    self.live.remember(t.id, namespace, name, revision, applied)
                if revision:
                    resources = await self.live.states(
                        api, conn.core, t.id, namespace, name, revision, just_applied=applied is not None
                    )
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
                log.warning("HelmApp %s/%s: resource states not read on %s: %s", *key, t.describe(), brief(exc))
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
        return ClusterResult(outcome, delay=delay, version=chart.version, chart=chart)

    async def _refused(
        self, key: Key, obj: HelmApp, t: ClusterTarget, conn: Conn, msg: str, version: str, reason: str
    ) -> ClusterResult:
        """Not accepted on this cluster: status condition, Event and log line; the release is not touched."""
        log.warning("HelmApp %s/%s not accepted on %s: %s", *key, t.describe(), msg, extra=log_extra(key, t))
        await self._events(obj, ActionResult(False, reason, msg), conn=conn)
        outcome = ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=msg)
        return ClusterResult(outcome, failed=True, accepted_error=msg, stalled=True, version=version)

    async def _namespace_metadata(self, obj: HelmApp, namespace: str, conn: Conn) -> str | None:
        """Fleet's namespaceLabels/namespaceAnnotations, applied to the release namespace (added or
        overwritten, never removed) as the HelmApp's serviceAccount. Returns why it was refused (reported as
        an Event and a log line here), None when done."""
        spec = obj.spec
        labels, annotations = spec.namespace_labels or {}, spec.namespace_annotations or {}
        if not labels and not annotations:
            return None
        identity, kube = self.connect.acting(obj, conn)
        try:
            changed = await kube.ensure_namespace_metadata(namespace, labels, annotations)
        except Exception as exc:
            if not denied(exc):
                raise
            msg = "namespaceLabels/namespaceAnnotations not applied, " + denial_message(
                identity, "get/patch", "namespaces", None, namespace
            )
            key = key_of(obj)
            where = "" if conn.local else f" on cluster {conn.name} in namespace {conn.namespace}"
            log.warning("HelmApp %s/%s%s: %s", *key, where, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            await self._events(obj, ActionResult(False, "AccessDenied", msg), conn=conn)
            return msg
        if changed:
            log.info(
                "labelled/annotated namespace %s for HelmApp %s/%s as %s", namespace, *key_of(obj), identity.describe()
            )
        return None

    async def _desired(self, t: ClusterTarget, conn: Conn, charts: ChartFetches) -> Desired:
        """The release for one cluster."""
        helmapp = t.helmapp
        plan = plan_target(t)  # the pipeline shared with helmops render/diff (helmops.desired)
        ns = plan.release_namespace
        chart = await charts.get(helmapp)
        render_for = getattr(self.values, "render_for", None)
        identity, api = self.connect.api_as(helmapp, conn)
        if render_for is not None and identity.impersonated and api is not None:
            # valuesFrom is read as the serviceAccount, on the cluster the release goes to.
            values = await render_for(helmapp, ns, t.cluster, api)
        elif render_for is not None and not (t.cluster is None and conn.local):
            values = await render_for(helmapp, ns, t.cluster, None if conn.local else conn.api)
        else:
            # The controller's own identity: the renderer reads only the HelmApp's own namespace.
            values = await self.values.render_values(helmapp, ns)
        return release_for(plan, chart, values, max_timeout=self.config.max_timeout_seconds)

    async def _say_clamped(self, key: Key, obj: HelmApp, desired: Desired, conn: Conn) -> None:
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
