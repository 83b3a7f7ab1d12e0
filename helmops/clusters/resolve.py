"""Which clusters a HelmApp was deployed to: the ``helmops.cattle.io/deployed-clusters`` bookkeeping.

Which clusters it deploys to *now* is step 1 of the desired state (:mod:`helmops.desired.targets`).

The clusters a HelmApp was deployed to are remembered in the HelmApp annotation
``helmops.cattle.io/deployed-clusters`` (a JSON list of cluster names of its namespace). An annotation is
metadata, so Fleet's own CRD does not prune it; it survives restarts; and it still names a cluster whose
Cluster object was deleted or whose API is down, which release labels on the cluster itself could not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from helmops.kubeio.bounded import loads as bounded_loads

DEPLOYED_ANNOTATION = "helmops.cattle.io/deployed-clusters"


def deployed_clusters(helmapp: Mapping[str, Any]) -> list[str]:
    """Cluster names from the bookkeeping annotation (malformed content counts as none)."""
    raw = ((helmapp.get("metadata") or {}).get("annotations") or {}).get(DEPLOYED_ANNOTATION)
    if not raw:
        return []
    try:
        names = bounded_loads(raw)  # tenant-editable: any depth must parse (helmops.kubeio)
    except ValueError:
        return []
    return sorted({str(n) for n in names if isinstance(n, str) and n}) if isinstance(names, list) else []


def deployed_value(names: Iterable[str]) -> str:
    return json.dumps(sorted(set(names)), separators=(",", ":"))


__all__ = [
    "DEPLOYED_ANNOTATION",
    "deployed_clusters",
    "deployed_value",
]
