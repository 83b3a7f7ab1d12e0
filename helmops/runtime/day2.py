"""Day-2 glue between the process (app.py) and polling, drift, resync jitter and per-HelmApp metrics.

Everything here is fed by the same watch events as the work queue (``observe``/``forget``) and runs its
helm action — a drift correction — inside the worker that holds the HelmApp's key, so it never races a
reconcile of the same release.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from helmops.desired.release import clamp_timeout
from helmops.drift.compare import MAX_NAMED, decode_release, encode_release
from helmops.drift.monitor import (
    DriftMonitor,
)
from helmops.polling.poller import (
    Poller,
    SourcesResolver,
)
from helmops.polling.schedule import (
    JITTER,
)
from helmops.reconcile import backoff
from helmops.reconcile.release import labelled_ours
from helmops.reconcile.rollback import rollback_current
from helmops.runtime import metrics
from helmops.runtime.queue import WorkQueue
from helmops.runtime.settings import Settings

log = logging.getLogger("helmops.controller")

Key = tuple[str, str]

#: requeue after a successful correction, so the status goes back to Ready promptly.
AFTER_CORRECTION_SECONDS = 0.5


def resource_counts(status: Mapping[str, Any], resources: int, modified: int, missing: int) -> dict[str, float]:
    """The ``fleet_helmapp_resources_*`` values: the status' resourceCounts when it has them, else derived
    from what the drift monitor knows of the local release."""
    counts = status.get("resourceCounts")
    if isinstance(counts, Mapping) and counts:
        out = {
            "resources_desired_ready": counts.get("desiredReady", 0),
            "resources_missing": counts.get("missing", 0),
            "resources_modified": counts.get("modified", 0),
            "resources_not_ready": counts.get("notReady", 0),
            "resources_orphaned": counts.get("orphaned", 0),
            "resources_ready": counts.get("ready", 0),
            "resources_unknown": counts.get("unknown", 0),
            "resources_wait_applied": counts.get("waitApplied", 0),
        }
        # drift is known here even when the status writer does not count it
        out["resources_modified"] = max(float(out["resources_modified"] or 0), float(modified))
        out["resources_missing"] = max(float(out["resources_missing"] or 0), float(missing))
        return {k: float(v or 0) for k, v in out.items()}
    state = str((status.get("display") or {}).get("state") or "")
    ready = int(status.get("readyClusters") or 0) >= int(status.get("desiredReadyClusters") or 1) and not state
    good = max(0, resources - modified - missing)
    return {
        "resources_desired_ready": float(resources),
        "resources_missing": float(missing),
        "resources_modified": float(modified),
        "resources_not_ready": 0.0,
        "resources_orphaned": 0.0,
        "resources_ready": float(good if ready or state == "Modified" else 0),
        "resources_unknown": 0.0,
        "resources_wait_applied": float(resources if state == "WaitApplied" else 0),
    }


class Day2:
    def __init__(
        self,
        settings: Settings,
        api: Any,
        kube: Any,
        driver: Any,
        reconciler: Any,
        charts: Any,
        queue: WorkQueue[Key],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.kube, self.driver, self.reconciler = settings, kube, driver, reconciler
        self.queue = queue
        self._rng = rng or random.Random()
        self.poller: Poller | None = None
        if SourcesResolver.available(charts):
            self.poller = Poller(kube, SourcesResolver(kube, charts), queue.add, concurrency=settings.poll_concurrency)
        else:
            log.warning("polling unavailable: the chart fetcher does not expose helmops.sources")
        self.drift = DriftMonitor(
            api,
            queue.add_after,
            period=settings.drift_check_seconds,
            delay=settings.drift_delay_seconds,
            busy=driver.holds,
        )
        reconciler.drift = self.drift_message
        sources = getattr(charts, "_sources", None)
        if sources is not None and hasattr(sources, "stats"):
            metrics.watch_chart_cache(lambda: sources.stats)
        self._failures: dict[Key, int] = {}

    # --- events ---
    def observe(self, body: Mapping[str, Any]) -> None:
        if self.poller is not None:
            self.poller.update(body)
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        self.drift.update(body)
        self._gauges(body)

    def forget(self, key: Key) -> None:
        if self.poller is not None:
            self.poller.forget(key)
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        self.drift.forget(key)
        self._failures.pop(key, None)
        metrics.remove_helmapp(*key)

    def start(self) -> None:
        self.drift.start()

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.close()
        await self.drift.stop()

    # --- reconcile hooks ---
    def drift_message(self, key: Key) -> str:
        found = self.drift.modified(key)
        if not found:
            return ""
        parts = [m.describe() for m in found[:MAX_NAMED]]
        more = f"; and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
        return "; ".join(parts) + more

    async def after_reconcile(self, key: Key, delay: float | None) -> float | None:
        if self.drift.should_correct(key):
            return await self.correct(key)
        if delay is not None and delay == self.settings.resync_seconds:
            # spread resyncs of HelmApps created together
            return delay * (1 + JITTER * self._rng.uniform(-1.0, 1.0))
        return delay

    async def correct(self, key: Key) -> float | None:
        """Fleet's correctDrift: ``helm rollback`` to the current revision of the deployed release."""
        obj = await self.kube.get_helmapp(*key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None
        spec = obj.get("spec") or {}
        helm = spec.get("helm") or {}
        name, ns = self.reconciler.spec.release_name(obj), self.reconciler.spec.release_namespace(obj)
        live = await self.kube.releases.read(ns, name)
        if live is not None and not labelled_ours(live, *key):
            # not this HelmApp's release (refused by the reconcile): drift on it is never corrected
            log.warning("drift correction %s/%s: release %s/%s is not this HelmApp's; skipped", *key, ns, name)
            self.drift.cleared(key)
            return self.settings.resync_seconds
        if live is None or live.status != "deployed" or self.driver.holds(ns, name):
            return self.settings.drift_delay_seconds or 1.0
        force, keep = self.drift.correct_options(key)
        start = time.monotonic()
        metrics.HELM_ACTIVE.inc()
        try:
            res = await rollback_current(
                self.driver,
                name,
                ns,
                live.revision,
                force=force,
                keep_fail_history=keep,
                timeout_seconds=clamp_timeout(int(helm.get("timeoutSeconds") or 0), self.settings.max_timeout_seconds),
                history_max=int(helm.get("maxHistory") or 0) or 2,
                service_account=spec.get("serviceAccount") or None,
                service_account_namespace=key[0],
                tenant=key[0],
                drop_failed=self._drop_failed,
                what=f" of {self.drift_message(key)}",
            )
        finally:
            metrics.HELM_ACTIVE.dec()
        elapsed = time.monotonic() - start
        outcome = "success" if res.ok else "failure"
        metrics.HELM_ACTIONS.labels("rollback", outcome).inc()
        metrics.HELM_ACTION_SECONDS.labels("rollback").observe(elapsed)
        metrics.HELM_OUTCOME_SECONDS.labels("rollback", outcome).observe(elapsed)
        metrics.DRIFT_CORRECTIONS.labels(outcome).inc()
        log.info(
            "drift correction %s/%s: %s",
            *key,
            res.message,
            extra={"helmapp": f"{key[0]}/{key[1]}", "action": "rollback"},
        )
        await self.kube.event(obj, res.reason, res.message, warning=not res.ok)
        if res.ok:
            self._failures.pop(key, None)
            self.drift.cleared(key)
            return AFTER_CORRECTION_SECONDS
        n = self._failures[key] = self._failures.get(key, 0) + 1
        return backoff(n, base=self.settings.backoff_base_seconds, cap=self.settings.backoff_cap_seconds)

    async def _drop_failed(self, namespace: str, name: str, after: int) -> bool:
        """keepFailHistory off: deletes the storage Secrets of failed revisions newer than ``after`` and, as
        helm marked revision ``after`` superseded when its rollback failed, restores it to deployed (label
        and record), so the history reads as if the attempt never happened. True if a revision was dropped."""
        listing = await self.kube.core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={name}")
        dropped = False
        current: Any = None
        for item in listing.items or []:
            labels = dict(item.metadata.labels or {})
            try:
                rev = int(labels.get("version") or 0)
            except ValueError:
                continue
            if rev > after and labels.get("status") == "failed":
                await self.kube.core.delete_namespaced_secret(item.metadata.name, namespace)
                dropped = True
            elif rev == after:
                current = item
        if dropped and current is not None and (current.metadata.labels or {}).get("status") == "superseded":
            record = decode_release((current.data or {}).get("release", ""))
            record.setdefault("info", {})["status"] = "deployed"
            patch = {
                "metadata": {"labels": {"status": "deployed"}, "resourceVersion": current.metadata.resource_version},
                "data": {"release": encode_release(record)},
            }
            await self.kube.core.patch_namespaced_secret(current.metadata.name, namespace, patch)
        return dropped

    # --- metrics ---
    def _gauges(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        status = body.get("status") or {}
        if not status:
            return
        helm = (body.get("spec") or {}).get("helm") or {}
        found = self.drift.modified(key)
        missing = sum(1 for m in found if m.missing)
        values: dict[str, float] = {
            "desired_ready_clusters": float(status.get("desiredReadyClusters") or 0),
            "ready_clusters": float(status.get("readyClusters") or 0),
            **resource_counts(status, self.drift.resources(key), len(found) - missing, missing),
        }
        metrics.set_helmapp(
            key[0],
            key[1],
            str(helm.get("repo") or ""),
            str(helm.get("chart") or ""),
            str(status.get("version") or ""),
            values,
        )


__all__ = ["Day2", "resource_counts"]
