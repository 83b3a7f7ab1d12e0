"""Taking releases down: a deleted HelmApp (finalize), clusters it no longer targets, and releases that are
no longer its own (renamed, moved). Each release goes through ``classify``/``decide`` and, when it must go,
the executor's uninstall — the same path as every other helm action."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from helmops.api.keys import LOCAL, Key
from helmops.api.objects import HelmApp
from helmops.clusters.connections import ClusterUnreachable, DuplicateCluster
from helmops.clusters.identity import denial_message, denied
from helmops.controller.base import ReconcilerBase, deployed, namespace_deletable
from helmops.controller.connect import Conn, brief, helmapp_name, key_of, log_extra, not_ours, plain
from helmops.controller.ledger import Entry, helmapp_uid
from helmops.desired.release import clamp_timeout
from helmops.desired.targets import ClusterTarget, untargeted
from helmops.kubeio.kube import FINALIZER
from helmops.reconcile import Action, ActionResult, classify, decide
from helmops.reconcile.executor import log_decision
from helmops.reconcile.release import labelled_ours
from helmops.reconcile.step import HelmCall, Step
from helmops.status import ClusterOutcome, Outcome, State, now_utc

log = logging.getLogger("helmops.controller")


class Teardown(ReconcilerBase):
    # --- deletion ----------------------------------------------------------------------------------
    async def _finalize(self, key: Key, obj: HelmApp, live_status: Mapping[str, Any]) -> float | None:
        """``obj`` is leniently parsed (:func:`helmops.api.parse.lenient_helmapp`): a HelmApp whose spec no
        longer validates is still finalized with what of it parses."""
        if FINALIZER not in obj.metadata.finalizers:
            return None
        obj = (await self._policy(obj)).apply(obj)  # a defaultServiceAccount acts for the deletion too
        try:
            targets, by_name = await self._targets(obj)
        except ValueError:
            targets, by_name = [], {}
        uid = helmapp_uid(obj)
        recorded = {e.cluster for e in await self.ledger.entries(uid)}
        names = {t.name for t in targets} | set(deployed(obj)) | recorded
        if not names:
            names = {LOCAL}
        todo: list[ClusterTarget] = list(targets)
        for name in sorted(names - {t.name for t in targets}):
            cluster = by_name.get(name)
            if cluster is None and name != LOCAL:
                msg = (
                    f"cluster {name} in namespace {key[0]}: the Cluster object is gone; its release was not uninstalled"
                )
                log.warning("finalize %s/%s: %s", *key, msg)
                await self._events(obj, ActionResult(False, "ClusterGone", msg))
                continue
            todo.append(ClusterTarget(name, key[0], cluster, untargeted(obj), "", False))
        results = await asyncio.gather(*(self._finalize_cluster(key, obj, t, live_status) for t in todo))
        failed = [r for r in results if isinstance(r, ClusterOutcome)]
        waits = [r for r in results if isinstance(r, float)]
        if failed:
            gen = obj.metadata.generation
            outcome = Outcome(key[1], key[0], gen, State.ERR_APPLIED, clusters=tuple(failed))
            await self._write_status(key, live_status, outcome)
            return self._retry_in(key)
        if waits:
            return min(waits)
        await self.ledger.drop(uid)
        await self.kube.remove_finalizer(obj.ref())
        self._ok(key)
        return None

    async def _finalize_cluster(
        self, key: Key, obj: HelmApp, t: ClusterTarget, live_status: Mapping[str, Any]
    ) -> ClusterOutcome | float | None:
        """Uninstalls the HelmApp's release(s) from one cluster: None when done, a wait in seconds, or the
        failure as a ClusterOutcome."""
        try:
            conn = await self.connect.to(t)
        except DuplicateCluster as exc:  # the release is the original Cluster's: nothing goes through this one
            log.warning("finalize %s/%s: %s", *key, exc.message, extra=log_extra(key))
            return None
        except ClusterUnreachable as exc:
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=plain(exc.message))
        try:
            return await self._finalize_on(key, obj, t, conn, live_status)
        except Exception as exc:  # the API of that cluster failed: retry, naming it
            if conn.local:
                raise
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=f"unreachable: {brief(exc)}")

    async def _finalize_on(
        self, key: Key, obj: HelmApp, t: ClusterTarget, conn: Conn, live_status: Mapping[str, Any]
    ) -> ClusterOutcome | float | None:
        spec = t.spec
        name, ns = t.release_name, t.release_namespace
        timeout = clamp_timeout(spec.helm.timeout_seconds or 0, self.config.max_timeout_seconds)
        live = await conn.releases.read(ns, name)
        if live is not None and not labelled_ours(live, *key):
            log.warning("finalize %s/%s: %s; not uninstalled", *key, not_ours(live))
            live = None
        now = now_utc()
        c = classify(
            live,
            "",
            held=conn.driver.holds(ns, name),
            now=now,
            timeout_seconds=timeout or 300,
            grace_seconds=self.config.pending_grace_seconds,
        )
        d = decide(c, deleting=True, keep_resources=spec.keep_resources, now=now)
        log_decision("finalize", key, ns, name, c, d, cluster=t.id, where=conn.where)
        if d.action is Action.WAIT:
            return d.wait_seconds
        if d.action is Action.UNINSTALL:
            version = live_status.get("version")
            step = Step(
                "finalize", key, t.id, conn.where, ns, name, c, d,
                HelmCall(timeout, spec.service_account or None, key[0], tenant=key[0]),
                event_suffix=f" (chart version {version})" if version else "",
            )  # fmt: skip
            res = await self.executor.run(step, conn.tools, self._report(obj, conn))
            if not res.ok:
                return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error=res.error or res.message)
            await self.ledger.forget(helmapp_uid(obj), helmapp_name(key), Entry(t.name, ns, name))
        if not spec.keep_resources and not await self._uninstall_orphans(obj, keep=None, conn=conn, cluster=t.name):
            return ClusterOutcome(t.name, t.namespace, State.ERR_APPLIED, error="uninstalling old releases failed")
        target = spec.namespace or ""
        if spec.delete_namespace and not spec.keep_resources:
            if namespace_deletable(target, own=self.config.own_namespace, extra=self.config.protected_namespaces):
                await self._delete_namespace(key, obj, t, conn, target)
            elif target:
                log.info("deleteNamespace: namespace %r is protected and was kept", target)
        return None

    async def _delete_namespace(self, key: Key, obj: HelmApp, t: ClusterTarget, conn: Conn, target: str) -> None:
        """deleteNamespace, as the HelmApp's serviceAccount. A refusal (policy or RBAC) keeps the namespace
        and is reported (Event, log); it does not hold up the HelmApp's deletion."""
        policy = await self._policy(t.helmapp)
        if not policy.ok:
            msg = f"deleteNamespace: namespace {target} kept: {policy.message()}"
            log.warning("finalize %s/%s on %s: %s", *key, t.describe(), msg)
            await self._events(obj, ActionResult(False, "PolicyViolation", msg), conn=conn)
            return
        helmapp = policy.apply(t.helmapp)
        identity, kube = self.connect.acting(helmapp, conn)
        try:
            deleted = await kube.delete_namespace(target)
        except Exception as exc:
            if not denied(exc):
                raise
            msg = "deleteNamespace: namespace kept, " + denial_message(identity, "delete", "namespaces", None, target)
            log.warning("finalize %s/%s on %s: %s", *key, t.describe(), msg, extra=log_extra(key))
            await self._events(obj, ActionResult(False, "AccessDenied", msg), conn=conn)
            return
        if deleted:
            log.info(
                "deleted namespace %s of HelmApp %s/%s on %s as %s", target, *key, t.describe(), identity.describe()
            )

    # --- clusters no longer targeted ---------------------------------------------------------------
    async def _cleanup(
        self, key: Key, obj: HelmApp, stale: Sequence[str], by_name: Mapping[str, Mapping[str, Any]]
    ) -> set[str]:
        """Releases on clusters no longer targeted are uninstalled (unless keepResources). Returns the names
        still to be cleaned up later (unreachable clusters)."""
        spec = obj.spec
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
            if spec.keep_resources:
                log.info("HelmApp %s/%s no longer targets %s; keepResources: release kept", *key, where)
                continue
            t = ClusterTarget(name, key[0], cluster, untargeted(obj), "", False)
            try:
                conn = await self.connect.to(t)
                current = Entry(name, t.release_namespace, t.release_name)
                clean = await self._uninstall_orphans(obj, keep=None, conn=conn, cluster=name, current=current)
            except DuplicateCluster as exc:  # what it reaches is the original Cluster's to keep or remove
                log.warning("HelmApp %s/%s: no longer targeted, nothing uninstalled: %s", *key, exc.message)
                clean = True
            except ClusterUnreachable as exc:
                log.warning("HelmApp %s/%s: no longer targeted, cleanup postponed: %s", *key, exc.message)
                clean = False
            except Exception as exc:
                log.warning("HelmApp %s/%s: no longer targets %s, cleanup postponed: %s", *key, where, brief(exc))
                clean = False
            if not clean:
                kept.add(name)
        return kept

    # --- releases no longer this HelmApp's ---------------------------------------------------------
    async def _uninstall_orphans(
        self,
        obj: HelmApp,
        keep: tuple[str, str] | None,
        conn: Conn,
        cluster: str,
        current: Entry | None = None,
    ) -> bool:
        """Uninstalls this HelmApp's releases on ``conn``'s cluster other than ``keep`` (left behind when
        spec.helm.releaseName or the namespace changed, or the cluster is no longer targeted). Only releases
        the ledger recorded are considered (plus ``current``, the release a cluster no longer targeted would
        have now, for releases installed before the ledger existed), and each only while its storage labels
        still name this HelmApp: a Secret a tenant planted elsewhere is never listed, let alone acted on.
        True when none is left."""
        key = key_of(obj)
        uid = helmapp_uid(obj)
        spec = obj.spec
        candidates = {e for e in await self.ledger.entries(uid) if e.cluster == cluster}
        if current is not None and current.cluster == cluster:
            candidates.add(current)
        timeout = clamp_timeout(spec.helm.timeout_seconds or 0, self.config.max_timeout_seconds)
        call = HelmCall(timeout, spec.service_account or None, key[0], tenant=key[0])
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
                    log.warning("HelmApp %s/%s: %s; not uninstalled", *key, not_ours(live), extra=log_extra(key))
                await self.ledger.forget(uid, helmapp_name(key), entry)
                continue
            now = now_utc()
            c = classify(
                live, "", held=False, now=now, timeout_seconds=timeout or 300,
                grace_seconds=self.config.pending_grace_seconds,
            )  # fmt: skip
            d = decide(c, deleting=True, keep_resources=False, now=now)
            where_id = f"{conn.namespace}/{conn.name}"
            log_decision("cleanup", key, entry.namespace, entry.name, c, d, cluster=where_id, where=conn.where)
            step = Step("cleanup", key, where_id, conn.where, entry.namespace, entry.name, c, d, call, orphan=True)
            res = await self.executor.run(step, conn.tools, self._report(obj, conn))
            if res.ok:
                await self.ledger.forget(uid, helmapp_name(key), entry)
            clean = clean and res.ok
        return clean


__all__ = ["Teardown"]
