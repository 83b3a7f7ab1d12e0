"""``targetRestrictions``: an allow-list deciding *where* a HelmApp deploys, never *with which options*.

Fleet v0.12 (fleet-rollout.md §3, ``bundlematch.go``/``clustermatcher.go``):

* no restrictions → no effect;
* a cluster is deployed to when some target, tried in order, and some ClusterGroup ``G`` of the cluster
  (``G`` absent when the cluster is in no group) make both the target's selectors and at least one
  restriction match — the *same* ``G`` for both. Selectors AND within a restriction, restrictions OR; a
  restriction that sets nothing matches nothing;
* the options still come from the first target matching *ignoring* restrictions (it may be an earlier,
  different target, and its ``doNotDeploy`` still wins) — that part lives in
  :func:`helmops.clusters.targeting.match_targets`, which calls :func:`allowed` here.
"""

from __future__ import annotations

from collections.abc import Sequence

from helmops.api.objects import Cluster, ClusterGroup
from helmops.api.options import BundleTarget
from helmops.api.spec import BundleTargetRestriction

__all__ = ["allowed", "allowed_without_targets", "restriction_matches"]


def _group_matches(
    name: str | None, selector_set: bool, group: ClusterGroup | None, r: BundleTargetRestriction
) -> bool:
    if not (name or selector_set):
        return True
    if group is None:
        return False
    if name and name != group.metadata.name:
        return False
    return r.cluster_group_selector is None or r.cluster_group_selector.matches(group.metadata.labels)


def restriction_matches(r: BundleTargetRestriction, cluster: Cluster, group: ClusterGroup | None) -> bool:
    """Whether the restriction selects ``cluster`` seen as a member of ``group`` (None: of no group)."""
    selector_set = r.cluster_group_selector is not None
    if not (r.cluster_name or r.cluster_selector is not None or r.cluster_group or selector_set):
        return False  # an empty restriction (only a name, say) matches nothing
    if r.cluster_name and r.cluster_name != cluster.metadata.name:
        return False
    if r.cluster_selector is not None and not r.cluster_selector.matches(cluster.metadata.labels):
        return False
    return _group_matches(r.cluster_group, selector_set, group, r)


def allowed(
    targets: Sequence[BundleTarget],
    restrictions: Sequence[BundleTargetRestriction],
    cluster: Cluster,
    member_of: Sequence[ClusterGroup],
) -> bool:
    """Fleet's deploy decision under restrictions: some target and some restriction select the cluster
    through the same ClusterGroup (or through none when the cluster is in no group). ``member_of`` are the
    cluster's groups (:func:`helmops.clusters.targeting.cluster_groups`). No restrictions: always True."""
    if not restrictions:
        return True
    # local import: targeting imports this module
    from helmops.clusters.targeting import target_matches

    views: list[ClusterGroup | None] = list(member_of) or [None]
    for target in targets:
        for group in views:
            as_member = [group] if group is not None else []
            if not target_matches(target, cluster, as_member):
                continue
            if any(restriction_matches(r, cluster, group) for r in restrictions):
                return True
    return False


def allowed_without_targets(
    restrictions: Sequence[BundleTargetRestriction], cluster: Cluster, member_of: Sequence[ClusterGroup]
) -> bool:
    """The restriction check for helmops' implicit local cluster (a HelmApp without targets, which Fleet
    sends to ClusterGroup ``default`` instead): some restriction selects the cluster."""
    if not restrictions:
        return True
    views: list[ClusterGroup | None] = list(member_of) or [None]
    return any(restriction_matches(r, cluster, g) for r in restrictions for g in views)
