"""Fleet-shaped status and Event texts from reconcile outcomes (pure computation)."""

from helmops.status.compute import (
    ClusterOutcome,
    Outcome,
    ResourceState,
    State,
    cluster_message,
    compute_status,
    now_utc,
    ready_message,
    status_changed,
    status_patch,
)

__all__ = [
    "ClusterOutcome",
    "Outcome",
    "ResourceState",
    "State",
    "cluster_message",
    "compute_status",
    "now_utc",
    "ready_message",
    "status_changed",
    "status_patch",
]
