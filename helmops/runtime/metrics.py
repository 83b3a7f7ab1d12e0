"""Prometheus metrics (own registry, served on HELMOPS_METRICS_BIND_ADDRESS).

Besides helmops' own ``helmops_*`` series, Fleet v0.12's per-HelmApp gauges ``fleet_helmapp_*`` (labels
name, namespace, repo, chart, version; exactly one series per HelmApp: the old one is removed when the
labels change, and all are removed when the HelmApp is deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("helmops_reconcile_total", "HelmApp reconciles by result", ["result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram(
    "helmops_reconcile_duration_seconds",
    "Time per HelmApp reconcile",
    ["result"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
HELM_ACTIONS = Counter(
    "helmops_helm_actions_total", "helm actions by action and result", ["action", "result"], registry=REGISTRY
)
HELM_ACTION_SECONDS = Histogram(
    "helmops_helm_action_duration_seconds",
    "Time per helm action",
    ["action"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
WORKERS_ACTIVE = Gauge("helmops_workers_active", "Reconcile workers busy", registry=REGISTRY)
WORKERS_MAX = Gauge("helmops_workers_max", "Reconcile workers configured", registry=REGISTRY)
HELM_ACTIVE = Gauge("helmops_helm_processes_active", "helm processes running", registry=REGISTRY)
HELM_MAX = Gauge("helmops_helm_processes_max", "Cap on concurrent helm processes", registry=REGISTRY)
QUEUE_DEPTH = Gauge("helmops_queue_depth", "HelmApps waiting for a worker", registry=REGISTRY)
ENABLED = Gauge("helmops_enabled", "1 when the HelmApp controller is enabled", registry=REGISTRY)
HELM_OUTCOME_SECONDS = Histogram(
    "helmops_helm_action_outcome_duration_seconds",
    "Time per helm action, by action and outcome",
    ["action", "result"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
POLLS = Counter(
    "helmops_polls_total",
    "Polls of chart sources for new versions (new_version, unchanged, error)",
    ["result"],
    registry=REGISTRY,
)
POLL_SECONDS = Histogram(
    "helmops_poll_duration_seconds",
    "Time to resolve a polled version constraint",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
POLLED_HELMAPPS = Gauge("helmops_polling_helmapps", "HelmApps with polling scheduled", registry=REGISTRY)
DRIFT_CHECKS = Counter("helmops_drift_checks_total", "Drift comparisons of a deployed release", registry=REGISTRY)
DRIFT_DETECTIONS = Counter(
    "helmops_drift_detections_total", "Releases found drifted (a new set of modified resources)", registry=REGISTRY
)
DRIFT_CORRECTIONS = Counter(
    "helmops_drift_corrections_total",
    "Drift corrections (helm rollback to the current revision) by result",
    ["result"],
    registry=REGISTRY,
)
PROMOTION_WAITING = Gauge(
    "helmops_promotion_waiting_helmapps",
    "HelmApps with a mutating action held, by what it waits for (approval, window)",
    ["reason"],
    registry=REGISTRY,
)
PROMOTIONS = Counter(
    "helmops_promotions_total",
    "Automatic promotions (helmops.cattle.io/promote-from) by result",
    ["result"],
    registry=REGISTRY,
)
DRIFT_MODIFIED = Gauge("helmops_drift_modified_helmapps", "HelmApps currently reported Modified", registry=REGISTRY)
LEADER = Gauge(
    "helmops_leader", "1 while this process holds the leader Lease (or runs without election)", registry=REGISTRY
)

_FLEET_LABELS = ("name", "namespace", "repo", "chart", "version")
FLEET_GAUGES: dict[str, Gauge] = {
    metric: Gauge(f"fleet_helmapp_{metric}", help_text, list(_FLEET_LABELS), registry=REGISTRY)
    for metric, help_text in (
        ("desired_ready_clusters", "Clusters the HelmApp is deployed to"),
        ("ready_clusters", "Clusters where the HelmApp is ready"),
        ("resources_desired_ready", "Resources the HelmApp deploys, summed over clusters"),
        ("resources_missing", "Resources missing, summed over clusters"),
        ("resources_modified", "Resources modified (drifted), summed over clusters"),
        ("resources_not_ready", "Resources not ready, summed over clusters"),
        ("resources_orphaned", "Resources orphaned, summed over clusters"),
        ("resources_ready", "Resources ready, summed over clusters"),
        ("resources_unknown", "Resources in an unknown state, summed over clusters"),
        ("resources_wait_applied", "Resources waiting to be applied, summed over clusters"),
    )
}
_fleet_series: dict[tuple[str, str], tuple[str, ...]] = {}


def set_helmapp(namespace: str, name: str, repo: str, chart: str, version: str, values: Mapping[str, float]) -> None:
    """Sets a HelmApp's fleet_helmapp_* gauges; a series with other labels (e.g. the previous version) is
    removed first, so there is one series per HelmApp."""
    labels = (name, namespace, repo, chart, version)
    old = _fleet_series.get((namespace, name))
    if old is not None and old != labels:
        for g in FLEET_GAUGES.values():
            try:
                g.remove(*old)
            except KeyError:
                pass
    _fleet_series[(namespace, name)] = labels
    for metric, g in FLEET_GAUGES.items():
        g.labels(*labels).set(float(values.get(metric, 0)))


def remove_helmapp(namespace: str, name: str) -> None:
    old = _fleet_series.pop((namespace, name), None)
    if old is None:
        return
    for g in FLEET_GAUGES.values():
        try:
            g.remove(*old)
        except KeyError:
            pass


class ChartCacheCollector(Collector):
    """Chart-source cache hits and misses, read from ``ChartSources.stats`` at scrape time."""

    #: stats key → (metric, kind) where kind is hit or miss.
    KEYS = {
        "index_cache_hits": ("index", "hit"),
        "index_shared": ("index", "hit"),
        "index_304": ("index", "revalidated"),
        "index_requests": ("index", "miss"),
        "cache_hits": ("chart", "hit"),
        "download_shared": ("chart", "hit"),
        "chart_304": ("chart", "revalidated"),
        "chart_downloads": ("chart", "miss"),
    }

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Any:
        fam = CounterMetricFamily(
            "helmops_chart_cache",
            "Chart source cache lookups (index/tag lists and chart archives)",
            labels=["cache", "result"],
        )
        totals: dict[tuple[str, str], float] = {}
        for cache, result in set(self.KEYS.values()):
            totals[(cache, result)] = 0.0
        stats = self._stats()
        for key, where in self.KEYS.items():
            totals[where] += float(stats.get(key, 0))
        for (cache, result), value in sorted(totals.items()):
            fam.add_metric([cache, result], value)
        yield fam


_chart_cache: ChartCacheCollector | None = None


def watch_chart_cache(stats: Callable[[], Mapping[str, int]]) -> None:
    global _chart_cache
    if _chart_cache is not None:
        REGISTRY.unregister(_chart_cache)
    _chart_cache = ChartCacheCollector(stats)
    REGISTRY.register(_chart_cache)


def serve(host: str, port: int) -> None:
    """Starts the metrics HTTP server in a daemon thread."""
    start_http_server(port, addr=host, registry=REGISTRY)


def init_labels() -> None:
    """Exports every label combination from the start (zeros), so rates and alerts work before traffic."""
    for result in ("ok", "retry", "error", "conflict"):
        RECONCILES.labels(result)
        RECONCILE_SECONDS.labels(result)
    for action in ("install", "upgrade", "recover", "uninstall"):
        HELM_ACTION_SECONDS.labels(action)
        for result in ("success", "failure"):
            HELM_ACTIONS.labels(action, result)
            HELM_OUTCOME_SECONDS.labels(action, result)
    for result in ("success", "failure"):
        HELM_ACTIONS.labels("rollback", result)
        HELM_OUTCOME_SECONDS.labels("rollback", result)
        DRIFT_CORRECTIONS.labels(result)
    HELM_ACTION_SECONDS.labels("rollback")
    for result in ("new_version", "unchanged", "error"):
        POLLS.labels(result)
