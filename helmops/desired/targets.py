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
from functools import cached_property
from typing import Any

from helmops.api.keys import LOCAL
from helmops.api.naming import release_name, release_namespace
from helmops.api.objects import Cluster, ClusterGroup, HelmApp
from helmops.api.spec import HelmAppSpec
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
    #: the HelmApp with the target's options merged into its spec (``targets`` removed), typed.
    helmapp: HelmApp
    #: the target's name (``default`` for the implicit local cluster).
    target_name: str
    #: spec.paused on the HelmApp or on the Cluster.
    paused: bool
    #: the ``targets[]`` entry that chose this cluster, in manifest form (None without targets): values
    #: assembly merges its ``helm`` over :attr:`root_helm` itself, so it can say which value came from it.
    target: Mapping[str, Any] | None = None
    #: the spec's own ``helm`` block in manifest form, before the target's options (None: ``helmapp``'s is
    #: the spec's own).
    root_helm: Mapping[str, Any] | None = None

    @property
    def spec(self) -> HelmAppSpec:
        """The effective spec on this cluster (the target's options merged in)."""
        return self.helmapp.spec

    @cached_property
    def release_name(self) -> str:
        """Fleet's release name on this cluster, computed once."""
        return release_name(self.helmapp.metadata.name, self.helmapp.spec)

    @cached_property
    def release_namespace(self) -> str:
        """Fleet's release namespace on this cluster, computed once."""
        return release_namespace(self.helmapp.spec)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"cluster {self.name} in namespace {self.namespace}"


def untargeted(helmapp: HelmApp) -> HelmApp:
    """``helmapp`` with ``targets`` removed from its spec: what a cluster it deploys to (or no longer
    does) gets when no target's options apply."""
    spec = helmapp.spec.model_copy(update={"targets": []})
    spec.model_fields_set.discard("targets")
    out = helmapp.model_copy(update={"spec": spec})
    out.unparsed = helmapp.unparsed
    return out


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
    helmapp: HelmApp,
    clusters: Sequence[Mapping[str, Any]] = (),
    groups: Sequence[Mapping[str, Any]] = (),
    *,
    local: Mapping[str, Any] | None = None,
) -> list[ClusterTarget]:
    """The clusters ``helmapp`` deploys to (Clusters and ClusterGroups of its namespace as API dicts).
    ``local`` is the Cluster object standing for the local cluster when ``targets`` is empty (None: the
    implicit one). Raises ValueError when the targets cannot be read (a leniently parsed HelmApp whose
    targets did not parse) or a target's merged options do not validate."""
    namespace = helmapp.metadata.namespace
    spec = helmapp.spec
    if "targets" in helmapp.unparsed:
        raise ValueError("spec.targets could not be read")
    # rollout (issue 17): targetRestrictions narrow where the HelmApp goes, in the controller and the CLI alike
    restrictions = list(spec.target_restrictions)
    if not spec.targets:
        app = untargeted(helmapp)
        if restrictions:
            stand_in = Cluster.model_validate(dict(local)) if local is not None else local_cluster(namespace)
            member_of = cluster_groups(stand_in, _models(groups, ClusterGroup, "ClusterGroup"))
            if not allowed_without_targets(restrictions, stand_in, member_of):
                return []
        if local is None:
            return [ClusterTarget(LOCAL, namespace, None, app, DEFAULT_TARGET_NAME, spec.paused)]
        paused = spec.paused or bool((local.get("spec") or {}).get("paused"))
        name = str((local.get("metadata") or {}).get("name") or LOCAL)
        return [ClusterTarget(name, namespace, local, app, DEFAULT_TARGET_NAME, paused)]
    by_name = {str((c.get("metadata") or {}).get("name")): c for c in clusters}
    matches = match_targets(
        spec.targets,
        namespace,
        _models(clusters, Cluster, "Cluster"),
        _models(groups, ClusterGroup, "ClusterGroup"),
        restrictions,
    )
    # Fleet's options merge works on the manifest form (helmops.values.merge); each cluster's result is
    # validated once into the typed spec.
    raw_spec = spec.to_dict()
    raw_targets = [t.to_dict() for t in spec.targets]
    base = {k: v for k, v in raw_spec.items() if k != "targets"}
    # Fleet merges the namespaceLabels/namespaceAnnotations of *all* targets into every deployment.
    ns_meta = {
        field: {**(raw_spec.get(field) or {}), **{k: v for t in raw_targets for k, v in (t.get(field) or {}).items()}}
        for field in ("namespaceLabels", "namespaceAnnotations")
    }
    root_helm = copy.deepcopy(dict(raw_spec.get("helm") or {}))
    merged_specs: dict[int | None, HelmAppSpec] = {}
    out = []
    for m in matches:
        obj = by_name.get(m.cluster.metadata.name)
        if obj is None:
            continue
        if m.target_index not in merged_specs:
            raw_target = raw_targets[m.target_index] if m.target_index is not None else {}
            merged = merge_deployment_options(base, raw_target)
            merged.update({field: value for field, value in ns_meta.items() if value})
            merged_specs[m.target_index] = HelmAppSpec.model_validate(merged)
        paused = spec.paused or m.cluster.spec.paused
        app = helmapp.model_copy(update={"spec": merged_specs[m.target_index]})
        app.unparsed = helmapp.unparsed
        out.append(
            ClusterTarget(
                m.cluster.metadata.name,
                namespace,
                obj,
                app,
                m.target_name,
                paused,
                target=copy.deepcopy(raw_targets[m.target_index]) if m.target_index is not None else None,
                root_helm=root_helm,
            )
        )
    return out


__all__ = ["DEFAULT_TARGET_NAME", "ClusterTarget", "resolve_targets", "untargeted"]
