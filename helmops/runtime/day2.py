"""Day-2 glue between the process (app.py) and polling, drift, resync jitter and per-HelmApp metrics.

Everything here is fed by the same watch events as the work queue (``observe``/``forget``). It runs no helm
action itself: what the drift monitor finds is an input of the reconcile's ``classify`` (through
:meth:`Day2.drifted`), and a correction is the executor's, like every other action.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from helmops.api.keys import LOCAL, Key
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

#: downstream clusters with a drift monitor at once (least recently reconciled stopped first).
MAX_DOWNSTREAM_MONITORS = 256

#: (HelmApp, API group, resource, namespace) → may the HelmApp's identity get it there?
CanRead = Callable[[Key, str, str, str], Awaitable[bool]]


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
            watch=settings.drift_watch,
            gauge=self._drift_gauge,
        )
        #: downstream cluster id (namespace/name) → its monitor, fed the same HelmApps as the local one.
        self._downstream: OrderedDict[str, DriftMonitor] = OrderedDict()
        #: the HelmApps seen (drift settings), so a monitor started later knows them all.
        self._apps: dict[Key, HelmApp] = {}
        #: the last parse per HelmApp and what it depended on (:meth:`_parsed`); entries go with forget()
        self._parses: dict[Key, tuple[tuple[Any, ...], HelmApp]] = {}
        #: builds the identity check of a downstream cluster's monitor (set by the process wiring).
        self.can_read_on: Callable[[str, Any], CanRead] | None = None
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()
        if isinstance(charts, SourcesFetcher):
            metrics.watch_chart_cache(lambda: charts.stats)

    # --- events ---
    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: the HelmApp is parsed once here (leniently: day-2 work follows a HelmApp the
        reconcile refuses as it did before) for polling, drift and the gauges; the stored status, which the
        model leaves out, travels beside it."""
        app = self._parsed(body)
        if self.poller is not None:
            self.poller.update(app, body.get("status"))
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        if app.metadata.deletion_timestamp:
            self._apps.pop(app.key, None)
        else:
            self._apps[app.key] = app
        for monitor in self._monitors():
            monitor.update(app)
        self._gauges(app, body.get("status") or {})

    def _parsed(self, body: Mapping[str, Any]) -> HelmApp:
        """The parse of the last event when only the status (or resourceVersion) changed since: every
        status write echoes back as an event, and a parse costs more than the rest of the event's handling.
        Labels, annotations and finalizers are compared whole; the spec through ``generation``, which the
        API server raises on every spec change (the status is a subresource)."""
        meta = body.get("metadata") or {}
        sig = (
            meta.get("uid"),
            meta.get("generation"),
            meta.get("deletionTimestamp"),
            repr(meta.get("labels")),
            repr(meta.get("annotations")),
            repr(meta.get("finalizers")),
        )
        key = (str(meta.get("namespace")), str(meta.get("name")))
        held = self._parses.get(key)
        if held is not None and held[0] == sig and sig[1] is not None:
            return held[1]
        app = lenient_helmapp(body)
        self._parses[key] = (sig, app)
        return app

    def forget(self, key: Key) -> None:
        self._parses.pop(key, None)
        if self.poller is not None:
            self.poller.forget(key)
            metrics.POLLED_HELMAPPS.set(len(self.poller))
        self._apps.pop(key, None)
        for monitor in self._monitors():
            monitor.forget(key)
        metrics.remove_helmapp(*key)

    def start(self) -> None:
        self._started = True
        self.drift.start()

    async def stop(self) -> None:
        self._started = False
        if self.poller is not None:
            self.poller.close()
        await self.drift.stop()
        monitors, self._downstream = list(self._downstream.values()), OrderedDict()
        for monitor in monitors:
            await monitor.close()

    # --- downstream clusters ---
    def attach(self, cluster: str, api: Any, busy: Callable[[str, str], bool]) -> None:
        """A reconcile reached downstream ``cluster`` through ``api``: drift there is watched and checked as on
        the local cluster, by a monitor of its own (one cluster's failures never delay another's checks).
        A new ``api`` (the connection was rebuilt) replaces the monitor."""
        if cluster == LOCAL or not self._started or self.settings.drift_check_seconds <= 0:
            return
        current = self._downstream.get(cluster)
        if current is not None and current.api is api:
            self._downstream.move_to_end(cluster)
            return
        if current is not None:
            self._close_later(self._downstream.pop(cluster))
        monitor = DriftMonitor(
            api,
            self.queue.add_after,
            period=self.settings.drift_check_seconds,
            delay=self.settings.drift_delay_seconds,
            busy=busy,
            watch=self.settings.drift_watch,
            cluster=cluster,
            gauge=self._drift_gauge,
        )
        if self.can_read_on is not None:
            monitor.can_read = self.can_read_on(cluster, api)
        for app in self._apps.values():
            monitor.update(app)
        self._downstream[cluster] = monitor
        monitor.start()
        while len(self._downstream) > MAX_DOWNSTREAM_MONITORS:
            _, oldest = self._downstream.popitem(last=False)
            self._close_later(oldest)

    def _close_later(self, monitor: DriftMonitor) -> None:
        task = asyncio.get_running_loop().create_task(monitor.close(), name="helmops-drift-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _monitors(self) -> list[DriftMonitor]:
        return [self.drift, *self._downstream.values()]

    def _monitor(self, cluster: str) -> DriftMonitor | None:
        return self.drift if cluster == LOCAL else self._downstream.get(cluster)

    def _drift_gauge(self) -> None:
        metrics.DRIFT_MODIFIED.set(sum(m.drifted_count for m in self._monitors()))

    # --- what the reconciler reads (controller.base.DriftFindings) ---
    def cleared(self, key: Key, cluster: str = LOCAL) -> None:
        monitor = self._monitor(cluster)
        if monitor is not None:
            monitor.cleared(key)

    def drifted(self, key: Key, cluster: str = LOCAL) -> str:
        monitor = self._monitor(cluster)
        found = monitor.modified(key) if monitor is not None else ()
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
