"""Fleet's target matching, as pure functions: which Fleet Clusters a HelmApp deploys to, and with which target.

Rules (Fleet v0.12, fleet-helmops.md §1.3):

* only Clusters in the HelmApp's namespace are candidates (a Cluster written without a namespace is taken
  to be in it);
* targets are tried in order and the **first** target that matches a cluster wins; when that target has
  ``doNotDeploy`` the cluster gets nothing (later targets are not tried);
* a target matches a cluster when every criterion it sets holds: ``clusterName`` equals the cluster's name,
  ``clusterSelector`` selects the cluster's labels, ``clusterGroup`` names a ClusterGroup the cluster belongs
  to, ``clusterGroupSelector`` selects the labels of a ClusterGroup the cluster belongs to (with
  ``clusterSelector`` narrowing the group). A target that sets none of them matches nothing;
* a cluster belongs to a ClusterGroup of its namespace whose ``spec.selector`` selects its labels; an empty
  selector (``{}``) selects every cluster, a missing one none (Kubernetes' LabelSelectorAsSelector);
* empty ``targets``: Fleet injects ``{name: default, clusterGroup: default}``. When a ClusterGroup named
  ``default`` exists in the namespace it decides, exactly as in Fleet; otherwise the HelmApp goes to the local
  cluster (the one helmops runs in). helmops itself does not ask: its desired-state pipeline
  (:mod:`helmops.desired.targets`) sends a HelmApp without targets to the local cluster, always.

Malformed label selectors raise ``ValueError`` (``helmops.api.validate`` reports them beforehand).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from helmops.api.keys import LOCAL
from helmops.api.naming import target_name
from helmops.api.objects import Cluster, ClusterGroup, ObjectMeta
from helmops.api.options import BundleTarget
from helmops.api.spec import BundleTargetRestriction
from helmops.rollout.restrictions import allowed, allowed_without_targets  # rollout (issue 17)

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_TARGET",
    "TargetMatch",
    "cluster_groups",
    "cluster_id",
    "first_matching_target",
    "local_cluster",
    "match_targets",
    "target_matches",
]

_Obj = TypeVar("_Obj", Cluster, ClusterGroup)

#: The ClusterGroup Fleet's default target names.
DEFAULT_GROUP = "default"
#: What Fleet puts in place of empty ``targets``.
DEFAULT_TARGET = BundleTarget(name="default", cluster_group=DEFAULT_GROUP)
#: Name of the local cluster (Fleet's bootstrap Cluster in ``fleet-local``).


@dataclass(frozen=True)
class TargetMatch:
    """One cluster the HelmApp deploys to, with the target that chose it.

    ``target`` and ``target_index`` are None when the HelmApp has no targets (Fleet's default target, or
    the local cluster); ``target_name`` is then ``default``.
    """

    cluster: Cluster
    target: BundleTarget | None
    target_index: int | None
    target_name: str

    @property
    def cluster_id(self) -> str:
        return cluster_id(self.cluster)


def cluster_id(cluster: Cluster) -> str:
    """``namespace/name``, the key Fleet uses for clusters in status."""
    return f"{cluster.metadata.namespace}/{cluster.metadata.name}"


def local_cluster(namespace: str) -> Cluster:
    """The local cluster as a Fleet Cluster: name ``local``, label ``name=local`` (Fleet's bootstrap label),
    in ``namespace`` (the HelmApp's, as the controller's values context has it)."""
    return Cluster(metadata=ObjectMeta(name=LOCAL, namespace=namespace, labels={"name": LOCAL}))


def _in_namespace(namespace: str, meta: ObjectMeta) -> bool:
    return (meta.namespace or namespace) == namespace


def _with_namespace(obj: _Obj, namespace: str) -> _Obj:
    if obj.metadata.namespace:
        return obj
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"namespace": namespace})})


def cluster_groups(cluster: Cluster, groups: Iterable[ClusterGroup]) -> list[ClusterGroup]:
    """The ClusterGroups (of the cluster's namespace) the cluster belongs to, in the order given."""
    found = []
    for group in groups:
        if not _in_namespace(cluster.metadata.namespace, group.metadata):
            continue
        selector = group.spec.selector
        if selector is None:
            continue
        if selector.matches(cluster.metadata.labels):
            found.append(group)
    return found


def target_matches(target: BundleTarget, cluster: Cluster, groups: Sequence[ClusterGroup]) -> bool:
    """Whether ``target``'s criteria select ``cluster``, a member of ``groups`` (see :func:`cluster_groups`)."""
    wants_group = bool(target.cluster_group) or target.cluster_group_selector is not None
    if not (target.cluster_name or target.cluster_selector is not None or wants_group):
        return False
    if target.cluster_name and target.cluster_name != cluster.metadata.name:
        return False
    if target.cluster_selector is not None and not target.cluster_selector.matches(cluster.metadata.labels):
        return False
    if wants_group:
        for group in groups:
            if target.cluster_group and target.cluster_group != group.metadata.name:
                continue
            selector = target.cluster_group_selector
            if selector is not None and not selector.matches(group.metadata.labels):
                continue
            return True
        return False
    return True


def first_matching_target(
    targets: Sequence[BundleTarget], cluster: Cluster, groups: Sequence[ClusterGroup]
) -> tuple[int, BundleTarget] | None:
    """The first target (index, target) that selects ``cluster``, doNotDeploy ones included; None if none."""
    member_of = cluster_groups(cluster, groups)
    for index, target in enumerate(targets):
        if target_matches(target, cluster, member_of):
            return index, target
    return None


def match_targets(
    targets: Sequence[BundleTarget],
    namespace: str,
    clusters: Sequence[Cluster],
    groups: Sequence[ClusterGroup] = (),
    restrictions: Sequence[BundleTargetRestriction] = (),
) -> list[TargetMatch]:
    """Every cluster the HelmApp (in ``namespace``, with ``targets``) deploys to, in the order given.

    Clusters without a namespace are taken to be in ``namespace``. See the module docstring for the rules;
    ``restrictions`` (``targetRestrictions``) narrow where, not with which target (:mod:`helmops.rollout.restrictions`).
    """

    candidates = []
    seen: set[str] = set()
    for cluster in clusters:
        if not _in_namespace(namespace, cluster.metadata):
            continue
        cluster = _with_namespace(cluster, namespace)
        key = cluster_id(cluster)
        if key in seen:
            continue
        seen.add(key)
        candidates.append(cluster)
    group_list = [_with_namespace(g, namespace) for g in groups if _in_namespace(namespace, g.metadata)]

    if not targets:
        if not any(g.metadata.name == DEFAULT_GROUP for g in group_list):
            local = next((c for c in candidates if c.metadata.name == LOCAL), None)
            chosen = local or local_cluster(namespace)
            if not allowed_without_targets(restrictions, chosen, cluster_groups(chosen, group_list)):
                return []
            return [TargetMatch(chosen, None, None, DEFAULT_TARGET.name)]
        return [
            TargetMatch(cluster, None, None, DEFAULT_TARGET.name)
            for cluster in candidates
            if first_matching_target([DEFAULT_TARGET], cluster, group_list) is not None
            and allowed([DEFAULT_TARGET], restrictions, cluster, cluster_groups(cluster, group_list))
        ]

    matches = []
    for cluster in candidates:
        found = first_matching_target(targets, cluster, group_list)
        if found is None:
            continue
        index, target = found
        if target.do_not_deploy:
            continue
        if not allowed(targets, restrictions, cluster, cluster_groups(cluster, group_list)):
            continue
        matches.append(TargetMatch(cluster, target, index, target_name(target, index)))
    return matches
