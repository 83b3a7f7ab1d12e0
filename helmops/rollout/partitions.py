"""``rolloutStrategy``: Fleet v0.12's per-pass rollout over partitions, as one pure function (:func:`plan`).

fleet-rollout.md §1 (``target/rollout.go``, ``partition.go``). Each reconcile of a HelmApp is one pass:

* targets sorted by cluster name; partitions are the manual ``partitions[]`` (spec order, each taking the
  targets its selectors match), or with none, one partition ``All`` below 200 targets (or with an integer
  ``autoPartitionSize`` ≤ 0), else chunks of ``limit(#targets, autoPartitionSize)`` named
  ``Partition <start> - <end>``;
* in partition order: a new target (no release yet) is installed while fewer than 50 were this pass; a
  target whose release differs from the spec is upgraded when the HelmApp and the partition are under their
  ``maxUnavailable`` — or when it is unavailable already (upgrading it costs nothing); upgrading an
  available target adds one to both counts;
* a partition with more than its ``maxUnavailable`` targets not up to date or unavailable is unavailable;
  once more than ``maxUnavailablePartitions`` partitions are, later partitions are not touched.

A target is unavailable when it has a release that failed or is pending, or was not Ready at its last
reconcile (the caller decides, :class:`TargetState`). Nothing here waits on a timer: the next pass comes
with the next reconcile.

Deviation (Fleet's later fix): in v0.12 a target in no manual partition — every cluster in no ClusterGroup
among them — is never deployed. helmops matches a cluster in no group by its name and labels, and puts
targets no manual partition takes into trailing partitions made by the automatic rule (named
``Unpartitioned`` when there is one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from helmops.api.objects import Cluster, ClusterGroup
from helmops.api.spec import Partition, RolloutStrategy
from helmops.rollout.limits import (
    AUTO_PARTITION_THRESHOLD,
    DEFAULT_AUTO_PARTITION_SIZE,
    DEFAULT_MAX_UNAVAILABLE_PARTITIONS,
    MAX_NEW,
    LimitError,
    limit,
)

__all__ = ["PartitionStatus", "RolloutPlan", "TargetState", "partition_targets", "plan"]


@dataclass(frozen=True)
class TargetState:
    """One targeted cluster as the pass sees it."""

    cluster: Cluster
    #: the ClusterGroups the cluster belongs to (:func:`helmops.clusters.targeting.cluster_groups`).
    groups: tuple[ClusterGroup, ...] = ()
    #: no release yet (Fleet: no BundleDeployment).
    new: bool = False
    #: the release already matches the spec.
    up_to_date: bool = True
    #: failed/pending release, or not Ready at the last reconcile (never True for a new target).
    unavailable: bool = False
    #: the HelmApp or the Cluster is paused: never changed by the pass, uses no budget (Fleet stages only).
    paused: bool = False

    @property
    def name(self) -> str:
        return self.cluster.metadata.name


@dataclass(frozen=True)
class PartitionStatus:
    """Fleet's ``status.partitions[]`` entry (``unavailable`` counted before the pass)."""

    name: str
    count: int
    max_unavailable: int
    unavailable: int


@dataclass(frozen=True)
class RolloutPlan:
    """The outcome of one pass: which clusters may change now; why each other one is held."""

    #: clusters that may be installed or upgraded now.
    go: frozenset[str] = frozenset()
    #: cluster → why it is held (plain words: partition, count, limit).
    held: Mapping[str, str] = field(default_factory=dict)
    unavailable: int = 0
    max_unavailable: int = 0
    unavailable_partitions: int = 0
    max_unavailable_partitions: int = 0
    newly_created: int = 0
    partitions: tuple[PartitionStatus, ...] = ()
    #: a rollout number Fleet cannot use: nothing may change (Fleet fails the Bundle reconcile).
    error: str | None = None

    def hold(self, cluster: str) -> str | None:
        """Why ``cluster`` may not change now (None: it may)."""
        if self.error is not None:
            return f"rollout: {self.error}"
        if cluster in self.go:
            return None
        return self.held.get(cluster)


def _partition_matches(p: Partition, cluster: Cluster, group: ClusterGroup | None) -> bool:
    group_wanted = bool(p.cluster_group) or p.cluster_group_selector is not None
    if not (p.cluster_name or p.cluster_selector is not None or group_wanted):
        return False
    if p.cluster_name and p.cluster_name != cluster.metadata.name:
        return False
    if p.cluster_selector is not None and not p.cluster_selector.matches(cluster.metadata.labels):
        return False
    if not group_wanted:
        return True
    if group is None:
        return False
    if p.cluster_group and p.cluster_group != group.metadata.name:
        return False
    return p.cluster_group_selector is None or p.cluster_group_selector.matches(group.metadata.labels)


def _auto(
    targets: Sequence[TargetState], size: int | str | None, single: str
) -> list[tuple[str, None, list[TargetState]]]:
    if (isinstance(size, int) and size <= 0) or len(targets) < AUTO_PARTITION_THRESHOLD:
        return [(single, None, list(targets))] if targets else []
    chunk = limit(len(targets), size, DEFAULT_AUTO_PARTITION_SIZE)
    chunk = max(chunk, 1)
    out: list[tuple[str, None, list[TargetState]]] = []
    for start in range(0, len(targets), chunk):
        part = list(targets[start : start + chunk])
        out.append((f"Partition {start} - {start + len(part)}", None, part))
    return out


def partition_targets(
    strategy: RolloutStrategy | None, targets: Sequence[TargetState]
) -> list[tuple[str, int | str | None, list[TargetState]]]:
    """The partitions, in rollout order: (name, the partition's own maxUnavailable, its targets by name)."""
    ordered = sorted(targets, key=lambda t: t.name)
    s = strategy or RolloutStrategy()
    if not s.partitions:
        return list(_auto(ordered, s.auto_partition_size, "All"))
    out: list[tuple[str, int | str | None, list[TargetState]]] = []
    taken: set[str] = set()
    for index, p in enumerate(s.partitions):
        members = [
            t for t in ordered if any(_partition_matches(p, t.cluster, g) for g in (t.groups or (None,)))
        ]  # fmt: skip
        taken.update(t.name for t in members)
        out.append((p.name or f"partition {index}", p.max_unavailable, members))
    rest = [t for t in ordered if t.name not in taken]
    out.extend(_auto(rest, s.auto_partition_size, "Unpartitioned"))
    return out


def plan(strategy: RolloutStrategy | None, targets: Sequence[TargetState]) -> RolloutPlan:
    """One pass of Fleet's rollout over ``targets`` (see the module docstring)."""
    s = strategy or RolloutStrategy()
    try:
        parts = partition_targets(s, targets)
        total = len({t.name for t in targets})
        max_unavailable = limit(total, s.max_unavailable)
        max_parts = limit(len(parts), s.max_unavailable_partitions, DEFAULT_MAX_UNAVAILABLE_PARTITIONS)
        part_max = [limit(len(members), own, s.max_unavailable) for _, own, members in parts]
    except LimitError as exc:
        return RolloutPlan(error=f"rolloutStrategy: {exc}")

    unavailable = sum(1 for t in {t.name: t for t in targets}.values() if t.unavailable and not t.new)
    statuses = tuple(
        PartitionStatus(name, len(members), pmax, sum(1 for t in members if t.unavailable and not t.new))
        for (name, _, members), pmax in zip(parts, part_max, strict=True)
    )
    go: set[str] = set()
    held: dict[str, str] = {}
    created = 0
    unavailable_partitions = 0
    stopped: str | None = None
    for (name, _, members), pmax in zip(parts, part_max, strict=True):
        if stopped is not None:
            for t in members:
                if t.name not in go and (t.new or not t.up_to_date):
                    held.setdefault(t.name, f"rollout: partition {name} waits for {stopped}")
            continue
        p_unavailable = sum(1 for t in members if t.unavailable and not t.new)
        for t in members:
            if t.name in go or (t.up_to_date and not t.new) or t.paused:
                continue
            if t.new:
                if created < MAX_NEW:
                    created += 1
                    go.add(t.name)
                    held.pop(t.name, None)
                else:
                    held[t.name] = f"rollout: at most {MAX_NEW} new clusters are installed per pass (partition {name})"
                continue
            bundle_ok = unavailable < max_unavailable or t.unavailable
            part_ok = p_unavailable < pmax or t.unavailable
            if bundle_ok and part_ok:
                go.add(t.name)
                held.pop(t.name, None)
                if not t.unavailable:
                    unavailable += 1
                    p_unavailable += 1
            elif not bundle_ok:
                held[t.name] = (
                    f"rollout: {unavailable} of {total} clusters unavailable or being updated, "
                    f"limit {max_unavailable} (rolloutStrategy.maxUnavailable); partition {name}"
                )
            else:
                held[t.name] = (
                    f"rollout: partition {name}: {p_unavailable} of {len(members)} clusters unavailable or "
                    f"being updated, limit {pmax} (partition maxUnavailable)"
                )
        behind = sum(1 for t in members if t.new or not t.up_to_date or t.unavailable or t.name in go)
        if behind > pmax:
            unavailable_partitions += 1
            if unavailable_partitions > max_parts:
                stopped = (
                    f"partition {name}: {behind} of {len(members)} clusters not yet "
                    f"updated and ready, limit {pmax}; {unavailable_partitions} partition(s) unavailable, "
                    f"limit {max_parts} (rolloutStrategy.maxUnavailablePartitions)"
                )
    return RolloutPlan(
        go=frozenset(go),
        held=held,
        unavailable=unavailable,
        max_unavailable=max_unavailable,
        unavailable_partitions=unavailable_partitions,
        max_unavailable_partitions=max_parts,
        newly_created=created,
        partitions=statuses,
    )
