"""Fleet-shaped status and Event texts from reconcile outcomes (pure computation)."""

from helmops.status.compute import (
    LOCAL_CLUSTER,
    Outcome,
    State,
    cluster_message,
    compute_status,
    now_utc,
    status_changed,
    status_patch,
)

__all__ = [
    "LOCAL_CLUSTER",
    "Outcome",
    "State",
    "cluster_message",
    "compute_status",
    "now_utc",
    "status_changed",
    "status_patch",
]
