"""Day-2 glue between the process (app.py) and polling, drift, resync jitter and per-HelmApp metrics.

Everything here is fed by the same watch events as the work queue (``observe``/``forget``). It runs no helm
action itself: what the drift monitor finds is an input of the reconcile's ``classify`` (through
:meth:`Day2.drifted`), and a correction is the executor's, like every other action.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

from helmops.api.keys import Key
from helmops.api.objects import HelmApp
from helmops.api.parse import lenient_helmapp
from helmops.desired.adapters import SourcesFetcher
from helmops.drift.compare import MAX_NAMED
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
from helmops.runtime import metrics
from helmops.runtime.queue import WorkQueue
from helmops.runtime.settings import Settings

log = logging.getLogger("helmops.controller")


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
        charts: Any,
        queue: WorkQueue[Key],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.kube, self.driver = settings, kube, driver
        self.queue = queue
        self._rng = rng or random.Random()
        self.poller: Poller | None = None
        if SourcesResolver.available(charts):
            self.poller = Poller(kube, SourcesResolver(charts), queue.add, concurrency=settings.poll_concurrency)
        else:
            log.warning("polling unavailable: the chart fetcher does not expose helmops.sources")
        self.drift = DriftMonitor(
            api,
            queue.add_after,
            period=settings.drift_check_seconds,
            delay=settings.drift_delay_seconds,
            busy=driver.holds,
        )
        if isinstance(charts, SourcesFetcher):
            metrics.watch_chart_cache(lambda: charts.stats)

    # --- events ---
    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: the HelmApp is parsed once here (leniently: day-2 work follows a HelmApp the
        reconcile refuses as it did before) for drift and the gauges; the poller reads the body itself."""
        if self.poller is not None:
            self.poller.update(body)
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        app = lenient_helmapp(body)
        self.drift.update(app)
        self._gauges(app, body.get("status") or {})

    def forget(self, key: Key) -> None:
        if self.poller is not None:
            self.poller.forget(key)
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        self.drift.forget(key)
        metrics.remove_helmapp(*key)

    def start(self) -> None:
        self.drift.start()

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.close()
        await self.drift.stop()

    # --- what the reconciler reads (controller.base.DriftFindings) ---
    def cleared(self, key: Key) -> None:
        self.drift.cleared(key)

    def drifted(self, key: Key) -> str:
        found = self.drift.modified(key)
        if not found:
            return ""
        parts = [m.describe() for m in found[:MAX_NAMED]]
        more = f"; and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
        return "; ".join(parts) + more

    def after_reconcile(self, delay: float | None) -> float | None:
        if delay is not None and delay == self.settings.resync_seconds:
            # spread resyncs of HelmApps created together
            return delay * (1 + JITTER * self._rng.uniform(-1.0, 1.0))
        return delay

    # --- metrics ---
    def _gauges(self, app: HelmApp, status: Mapping[str, Any]) -> None:
        key = app.key
        if not status:
            return
        helm = app.spec.helm
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
            helm.repo or "",
            helm.chart or "",
            str(status.get("version") or ""),
            values,
        )


__all__ = ["Day2", "resource_counts"]
