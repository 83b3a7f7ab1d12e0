"""One reconcile of one HelmApp: resolve its clusters, then per cluster read, compute desired, classify, act
once (:mod:`.apply`); clean up clusters no longer targeted (:mod:`.teardown`); write one status
(Fleet-shaped, per cluster) and Events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from helmops.api.keys import LOCAL, Key
from helmops.api.objects import HelmApp
from helmops.api.parse import identify_helmapp, lenient_helmapp
from helmops.clusters.identity import Identity
from helmops.clusters.resolve import DEPLOYED_ANNOTATION, deployed_value
from helmops.controller.apply import Apply, ChartFetches
from helmops.controller.base import (
    PROTECTED_NAMESPACES,
    DriftFindings,
    ReconcilerConfig,
    deployed,
    namespace_deletable,
)
from helmops.controller.connect import identity_of
from helmops.controller.pruned import report_pruned
from helmops.desired.release import FetchedChart
from helmops.kubeio.kube import FINALIZER, Conflict
from helmops.reconcile import ActionResult
from helmops.runtime import metrics
from helmops.status import Outcome, State

log = logging.getLogger("helmops.controller")

SHARD_LABEL = "fleet.cattle.io/shard-ref"


def in_shard(obj: Mapping[str, Any], shard_id: str | None) -> bool:
    """Fleet's sharding rule: a shard owns objects labelled with its id; the default shard (no id) owns
    the unlabelled ones."""
    label = ((obj.get("metadata") or {}).get("labels") or {}).get(SHARD_LABEL) or None
    return label == (shard_id or None)


class Reconciler(Apply):
    """One HelmApp per call. The HelmApp enters here as the API server returns it and is parsed once:
    strictly (limits, model, semantic checks: :meth:`SpecChecker.check`) on the reconcile path, leniently
    (:func:`helmops.api.parse.lenient_helmapp`) when it is being deleted, so an invalid one can still be
    finalized. Everything after reads the typed :class:`~helmops.api.objects.HelmApp`; only its live status
    stays as read (compared and patched in the stored shape)."""

    # --- entry point -------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        start = time.monotonic()
        result = "ok"
        try:
            obj = await self.kube.get_helmapp(*key)
            if obj is None or not in_shard(obj, self.config.shard_id):
                self._forget(key)
                return None
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                delay = await self._finalize(key, lenient_helmapp(obj), obj.get("status") or {})
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

    # --- the deployed-clusters annotation ----------------------------------------------------------
    async def _remember(self, key: Key, names: set[str]) -> None:
        """Writes the deployed-clusters annotation (see helmops.clusters.resolve)."""
        await self.kube.patch_annotations(*key, {DEPLOYED_ANNOTATION: deployed_value(names)})

    @staticmethod
    def _remembered(obj: HelmApp, status: Mapping[str, Any]) -> set[str]:
        """The clusters the HelmApp may have releases on. Without the annotation, a HelmApp that was
        reconciled before (it has a status) was deployed to the local cluster, as helmops did before
        targeting; a new one nowhere yet."""
        if DEPLOYED_ANNOTATION in obj.metadata.annotations:
            return set(deployed(obj))
        return {LOCAL} if obj.spec.targets and (status.get("version") or status.get("summary")) else set()

    # --- normal reconcile --------------------------------------------------------------------------
    async def _reconcile(self, key: Key, raw: Mapping[str, Any]) -> float | None:
        if FINALIZER not in ((raw.get("metadata") or {}).get("finalizers") or []):
            # the patch answers with the object: no second GET (fakes that answer nothing are read again)
            refreshed = await self.kube.add_finalizer(raw) or await self.kube.get_helmapp(*key)
            if refreshed is None:
                return None
            raw = refreshed
        live_status: Mapping[str, Any] = raw.get("status") or {}

        checked = self.spec.check(raw)  # the one parse of the reconcile path
        problems = checked.problems
        if problems or checked.app is None:
            # not accepted: named by its metadata alone in Events (its spec is not read any further)
            obj = identify_helmapp(raw)
            gen = obj.metadata.generation
            outcome = Outcome(
                key[1],
                key[0],
                gen,
                State.ERR_APPLIED,
                accepted=False,
                accepted_error="invalid spec: " + "; ".join(problems),
                stalled=True,
            )
            await self._write_status(key, live_status, outcome)
            await self._events(obj, ActionResult(False, "InvalidSpec", "invalid spec: " + "; ".join(problems)))
            return self._retry_in(key)
        obj = checked.app
        gen = obj.metadata.generation

        # Operator policy, before anything runs: nothing is fetched, rendered or installed for a violation.
        policy = await self._policy(obj)
        if not policy.ok:
            msg = "policy violation: " + policy.message()
            log.warning("HelmApp %s/%s: %s", *key, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            outcome = Outcome(key[1], key[0], gen, State.ERR_APPLIED, accepted=False, accepted_error=msg, stalled=True)
            await self._write_status(key, live_status, outcome)
            await self._events(obj, ActionResult(False, "PolicyViolation", msg))
            return self._retry_in(key)
        obj = policy.apply(obj)
        await report_pruned(self, key, obj)  # issue 17: misspelled keys the API server dropped
        self._identity[key] = identity_of(obj)

        try:
            targets, by_name = await self._targets(obj)
        except ValueError as exc:
            outcome = Outcome(
                key[1], key[0], gen, State.ERR_APPLIED, accepted=False, accepted_error=str(exc), stalled=True
            )
            await self._write_status(key, live_status, outcome)
            return self._retry_in(key)
        # Remember every targeted cluster before touching it, so a crash cannot lose track of a release.
        remembered = self._remembered(obj, live_status)
        tracked = bool(obj.spec.targets) or DEPLOYED_ANNOTATION in obj.metadata.annotations
        known = set(deployed(obj))
        if tracked and remembered | {t.name for t in targets} != known:
            known = remembered | {t.name for t in targets}
            await self._remember(key, known)

        charts = ChartFetches(self.charts)
        try:
            if targets:
                # The chart of the first cluster, resolved before any helm action so GotNewChartVersion precedes
                # the Upgraded Events (per-cluster fetches reuse it, errors included).
                try:
                    first: FetchedChart | None = await charts.get(targets[0].helmapp)
                except Exception:
                    first = None
                old_version = live_status.get("version")
                if first is not None and old_version and old_version != first.version:
                    await self.kube.event(
                        obj.ref(),
                        "GotNewChartVersion",
                        f"chart {first.name} version {first.version} (was {old_version}), digest {first.digest}",
                    )
            rnd = await self._rollout_begin(key, obj, targets, live_status)  # rollout (issue 17)
            results = await asyncio.gather(
                *(rnd.around(t.name, self._reconcile_cluster(key, obj, t, charts)) for t in targets)
            )
        finally:
            charts.cancel()
        self._rollout_end(key, obj, {r.outcome.name: r.outcome.state.value for r in results})  # rollout (issue 17)

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
        await self._write_status(key, live_status, outcome)
        delays = [r.delay for r in results if r.delay is not None]
        if any(r.failed for r in results):
            delays.append(self._retry_in(key))
        else:
            self._ok(key)
        if not delays:
            return self.config.resync_seconds
        return min(delays)


__all__ = [
    "PROTECTED_NAMESPACES",
    "SHARD_LABEL",
    "DriftFindings",
    "Identity",
    "Key",
    "Reconciler",
    "ReconcilerConfig",
    "in_shard",
    "namespace_deletable",
]
