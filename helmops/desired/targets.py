"""Step 1 of the desired state: which clusters a HelmApp goes to, each with its effective spec (pure).

Both the controller and ``helmops render/diff`` call :func:`resolve_targets`; they differ only in where the
Fleet Cluster and ClusterGroup objects come from (the management API, or the CLI's offline inventory).

Empty ``targets``: the local cluster (the one the controller runs in), as before multi-cluster targeting; a
ClusterGroup named ``default`` or a Cluster named ``local`` in the list is not consulted. ``local`` lets a
caller name the Cluster object that stands for the local cluster (``helmops render --cluster``).
Otherwise :func:`helmops.clusters.targeting.match_targets` decides among the Fleet Clusters of the HelmApp's
namespace, the winning target's options are merged over the spec's (Fleet's ``options.Merge``), and the
``namespaceLabels``/``namespaceAnnotations`` of *all* targets are merged into every cluster's spec (Fleet).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helmops.api.keys import LOCAL
from helmops.api.objects import Cluster, ClusterGroup
from helmops.api.options import BundleTarget
from helmops.api.spec import BundleTargetRestriction
from helmops.clusters.targeting import cluster_groups, local_cluster, match_targets
from helmops.rollout.restrictions import allowed_without_targets
from helmops.values.merge import merge_deployment_options

log = logging.getLogger("helmops.clusters")

DEFAULT_TARGET_NAME = "default"


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
    #: the raw ``targets[]`` entry that chose this cluster (None without targets): values assembly merges
    #: its ``helm`` over :attr:`root_helm` itself, so it can say which value came from the target.
    target: Mapping[str, Any] | None = None
    #: the spec's own ``helm`` block, before the target's options (None: ``helmapp``'s is the spec's own).
    root_helm: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"cluster {self.name} in namespace {self.namespace}"


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
    *,
    local: Mapping[str, Any] | None = None,
) -> list[ClusterTarget]:
    """The clusters ``helmapp`` deploys to (Clusters and ClusterGroups of its namespace as API dicts).
    ``local`` is the Cluster object standing for the local cluster when ``targets`` is empty (None: the
    implicit one). Raises ValueError for a malformed target (validation reports those first)."""
    meta = helmapp.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    spec: Mapping[str, Any] = helmapp.get("spec") or {}
    raw_targets = list(spec.get("targets") or [])
    base = {k: copy.deepcopy(v) for k, v in spec.items() if k != "targets"}
    # rollout (issue 17): targetRestrictions narrow where the HelmApp goes, in the controller and the CLI alike
    restrictions = [BundleTargetRestriction.model_validate(r) for r in spec.get("targetRestrictions") or []]
    if not raw_targets:
        app = {**helmapp, "spec": base}
        if restrictions:
            stand_in = Cluster.model_validate(dict(local)) if local is not None else local_cluster(namespace)
            member_of = cluster_groups(stand_in, _models(groups, ClusterGroup, "ClusterGroup"))
            if not allowed_without_targets(restrictions, stand_in, member_of):
                return []
        if local is None:
            return [ClusterTarget(LOCAL, namespace, None, app, DEFAULT_TARGET_NAME, bool(spec.get("paused")))]
        paused = bool(spec.get("paused")) or bool((local.get("spec") or {}).get("paused"))
        name = str((local.get("metadata") or {}).get("name") or LOCAL)
        return [ClusterTarget(name, namespace, local, app, DEFAULT_TARGET_NAME, paused)]
    targets = [BundleTarget.model_validate(t) for t in raw_targets]
    by_name = {str((c.get("metadata") or {}).get("name")): c for c in clusters}
    matches = match_targets(
        targets,
        namespace,
        _models(clusters, Cluster, "Cluster"),
        _models(groups, ClusterGroup, "ClusterGroup"),
        restrictions,
    )
    # Fleet merges the namespaceLabels/namespaceAnnotations of *all* targets into every deployment.
    ns_meta = {
        field: {
            **(spec.get(field) or {}),
            **{k: v for t in raw_targets if isinstance(t, Mapping) for k, v in (t.get(field) or {}).items()},
        }
        for field in ("namespaceLabels", "namespaceAnnotations")
    }
    root_helm = copy.deepcopy(dict(spec.get("helm") or {}))
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
            ClusterTarget(
                m.cluster.metadata.name,
                namespace,
                obj,
                {**helmapp, "spec": merged},
                m.target_name,
                paused,
                target=copy.deepcopy(dict(raw_target)) if m.target_index is not None else None,
                root_helm=root_helm,
            )
        )
    return out


__all__ = ["DEFAULT_TARGET_NAME", "ClusterTarget", "resolve_targets"]
