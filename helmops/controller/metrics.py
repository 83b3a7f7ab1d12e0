"""Prometheus metrics (own registry, served on HELMOPS_METRICS_BIND_ADDRESS)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
