"""Which clusters a HelmApp goes to, each with its effective spec (pure; the controller's view of targeting).

Empty ``targets``: the local cluster (the one the controller runs in), as before multi-cluster targeting.
Otherwise :func:`helmops.clusters.targeting.match_targets` decides among the Fleet Clusters of the HelmApp's
namespace, and the winning target's options are merged over the spec's (Fleet's ``options.Merge``).

The clusters a HelmApp was deployed to are remembered in the HelmApp annotation
``helmops.cattle.io/deployed-clusters`` (a JSON list of cluster names of its namespace). An annotation is
metadata, so Fleet's own CRD does not prune it; it survives restarts; and it still names a cluster whose
Cluster object was deleted or whose API is down, which release labels on the cluster itself could not.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helmops.api.keys import LOCAL
from helmops.api.models import BundleTarget, Cluster, ClusterGroup
from helmops.clusters.targeting import match_targets
from helmops.kubeio.bounded import loads as bounded_loads
from helmops.values.merge import merge_deployment_options

log = logging.getLogger("helmops.clusters")

DEPLOYED_ANNOTATION = "helmops.cattle.io/deployed-clusters"


@dataclass(frozen=True)
class ClusterTarget:
    """One cluster a HelmApp deploys to."""

    name: str
    #: the Fleet cluster namespace (the HelmApp's).
    namespace: str
    #: the Cluster object; None for the implicit local cluster (empty targets).
    cluster: Mapping[str, Any] | None
    #: the HelmApp with the target's options merged into its spec (``targets`` removed).
    helmapp: Mapping[str, Any]
    #: the target's name (``default`` for the implicit local cluster).
    target_name: str
    #: spec.paused on the HelmApp or on the Cluster.
    paused: bool

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"cluster {self.name} in namespace {self.namespace}"


def has_targets(helmapp: Mapping[str, Any]) -> bool:
    return bool((helmapp.get("spec") or {}).get("targets"))


def _models(items: Iterable[Mapping[str, Any]], model: Any, what: str) -> list[Any]:
    out = []
    for item in items:
        try:
            out.append(model.model_validate(dict(item)))
        except Exception as exc:  # pydantic.ValidationError: skip the malformed object, keep the others
            name = (item.get("metadata") or {}).get("name")
            log.warning("ignoring malformed %s %s: %s", what, name, str(exc).splitlines()[0])
    return out


def resolve_targets(
    helmapp: Mapping[str, Any],
    clusters: Sequence[Mapping[str, Any]] = (),
    groups: Sequence[Mapping[str, Any]] = (),
) -> list[ClusterTarget]:
    """The clusters ``helmapp`` deploys to (Clusters and ClusterGroups of its namespace as API dicts).
    Raises ValueError for a malformed target (validation reports those first)."""
    meta = helmapp.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    spec: Mapping[str, Any] = helmapp.get("spec") or {}
    raw_targets = list(spec.get("targets") or [])
    base = {k: copy.deepcopy(v) for k, v in spec.items() if k != "targets"}
    if not raw_targets:
        local = {**helmapp, "spec": base}
        return [ClusterTarget(LOCAL, namespace, None, local, "default", bool(spec.get("paused")))]
    targets = [BundleTarget.model_validate(t) for t in raw_targets]
    by_name = {str((c.get("metadata") or {}).get("name")): c for c in clusters}
    matches = match_targets(
        targets,
        namespace,
        _models(clusters, Cluster, "Cluster"),
        _models(groups, ClusterGroup, "ClusterGroup"),
    )
    # Fleet merges the namespaceLabels/namespaceAnnotations of *all* targets into every deployment.
    ns_meta = {
        field: {
            **(spec.get(field) or {}),
            **{k: v for t in raw_targets if isinstance(t, Mapping) for k, v in (t.get(field) or {}).items()},
        }
        for field in ("namespaceLabels", "namespaceAnnotations")
    }
    out = []
    for m in matches:
        obj = by_name.get(m.cluster.metadata.name)
        if obj is None:
            continue
        raw_target: Mapping[str, Any] = raw_targets[m.target_index] if m.target_index is not None else {}
        merged = merge_deployment_options(base, raw_target)
        merged.update({field: value for field, value in ns_meta.items() if value})
        paused = bool(spec.get("paused")) or bool((obj.get("spec") or {}).get("paused"))
        out.append(
            ClusterTarget(m.cluster.metadata.name, namespace, obj, {**helmapp, "spec": merged}, m.target_name, paused)
        )
    return out


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
    "LOCAL",  # re-exported only for controller/reconciler.py (the lead's file); it should import helmops.api.keys
    "ClusterTarget",
    "deployed_clusters",
    "deployed_value",
    "has_targets",
    "resolve_targets",
]
