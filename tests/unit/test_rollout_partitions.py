"""rolloutStrategy (helmops.rollout.limits, helmops.rollout.partitions): every worked example of
fleet-rollout.md §1 (limit table, R1 to R8) and the edge cases around them."""

from __future__ import annotations

from typing import Any

import pytest

from helmops.api import Cluster, ClusterGroup
from helmops.api.spec import RolloutStrategy
from helmops.rollout.limits import LimitError, limit
from helmops.rollout.partitions import TargetState, partition_targets, plan


@pytest.mark.parametrize(
    ("count", "value", "expected"),
    [
        (10, "50%", 5), (3, "50%", 1), (19, "10%", 1), (7, "33.3%", 2), (10, "12.5%", 1), (230, "25%", 57),
        (10, "150%", 15), (10, "5", 5), (0, "50%", 1), (0, 7, 7), (10, 15, 15), (10, -1, -1), (10, 0, 0),
        (10, "0%", 1), (10, "-5%", 1), (10, None, 10),
    ],
)  # fmt: skip
def test_limit_table(count: int, value: Any, expected: int) -> None:
    assert limit(count, value) == expected


def test_limit_first_set_value_wins_and_errors() -> None:
    assert limit(10, None, "20%", 9) == 2
    for bad in ("0", "-5", "abc", "x%"):
        with pytest.raises(LimitError):
            limit(10, bad)


def cluster(i: int | str, **labels: str) -> Cluster:
    name = i if isinstance(i, str) else f"c{i:03d}"
    return Cluster.model_validate({"metadata": {"name": name, "namespace": "fleet-default", "labels": labels}})


ALL = ClusterGroup.model_validate({"metadata": {"name": "all", "namespace": "fleet-default"}, "spec": {"selector": {}}})


def targets(n: int, *, changed: bool = True, not_ready: tuple[int, ...] = (), new: bool = False) -> list[TargetState]:
    return [
        TargetState(cluster(i, env="prod"), (ALL,), new=new, up_to_date=not changed and not new,
                    unavailable=i in not_ready and not new)
        for i in range(n)
    ]  # fmt: skip


def strategy(**kw: Any) -> RolloutStrategy:
    return RolloutStrategy.model_validate(kw)


def test_r1_max_unavailable_2_updates_two() -> None:
    p = plan(strategy(maxUnavailable=2), targets(10))
    assert sorted(p.go) == ["c000", "c001"]
    assert (p.unavailable, p.max_unavailable, p.unavailable_partitions, p.max_unavailable_partitions) == (2, 2, 1, 0)
    assert [(s.name, s.count, s.max_unavailable, s.unavailable) for s in p.partitions] == [("All", 10, 2, 0)]
    assert "2 of 10 clusters unavailable or being updated, limit 2" in (p.hold("c002") or "")


def test_r2_already_not_ready_clusters_are_updated_first_and_use_the_budget() -> None:
    p = plan(strategy(maxUnavailable=2), targets(10, not_ready=(3, 7)))
    assert sorted(p.go) == ["c003", "c007"]


def test_r3_zero_zero_percent_and_no_strategy() -> None:
    assert plan(strategy(maxUnavailable=0), targets(10)).go == frozenset()
    assert sorted(plan(strategy(maxUnavailable="0%"), targets(10)).go) == ["c000"]
    assert len(plan(None, targets(10)).go) == 10


def test_r4_at_most_50_new_per_pass_never_gated_by_max_unavailable() -> None:
    p = plan(strategy(maxUnavailable=1), targets(60, new=True))
    assert len(p.go) == 50 and p.newly_created == 50
    assert "at most 50 new clusters" in (p.hold("c059") or "")
    # next pass: the 50 exist (being applied: not up to date, not unavailable in Fleet's sense), 10 are new
    after = [TargetState(t.cluster, t.groups, new=i >= 50, up_to_date=i < 50) for i, t in enumerate(targets(60))]
    assert sorted(plan(strategy(maxUnavailable=1), after).go) == [f"c{i:03d}" for i in range(50, 60)]


def sizes(n: int, **kw: Any) -> list[tuple[str, int]]:
    return [(name, len(m)) for name, _, m in partition_targets(strategy(**kw), targets(n))]


def test_r5_auto_partitions_from_200_targets() -> None:
    assert sizes(199) == [("All", 199)]
    assert sizes(200) == [(f"Partition {s} - {s + 50}", 50) for s in range(0, 200, 50)]
    got = sizes(230)
    assert [n for _, n in got] == [57, 57, 57, 57, 2] and got[-1][0] == "Partition 228 - 230"
    assert sizes(200, autoPartitionSize=0) == [("All", 200)]
    assert sizes(200, autoPartitionSize="0%") == [(f"Partition {s} - {s + 1}", 1) for s in range(200)]
    assert [n for _, n in sizes(200, autoPartitionSize=30)] == [30] * 6 + [20]


def test_r6_partitions_stop_at_the_first_unavailable_one() -> None:
    p = plan(strategy(maxUnavailable="10%"), targets(200))
    assert (p.max_unavailable, [s.max_unavailable for s in p.partitions]) == (20, [5, 5, 5, 5])
    assert sorted(p.go) == [f"c{i:03d}" for i in range(5)]
    assert "rollout: partition Partition 100 - 150 waits for partition Partition 0 - 50: 50 of 50" in (
        p.hold("c100") or ""
    )
    p = plan(strategy(maxUnavailable="10%", maxUnavailablePartitions=1), targets(200))
    assert sorted(p.go) == [f"c{i:03d}" for i in [*range(5), *range(50, 55)]]


def test_r7_canary_partition_then_the_rest_once_canary_is_ready() -> None:
    s = strategy(
        maxUnavailable=1,
        partitions=[{"name": "canary", "clusterName": "c000"},
                    {"name": "rest", "clusterSelector": {"matchLabels": {"env": "prod"}}}],
    )  # fmt: skip
    p = plan(s, targets(5))
    assert sorted(p.go) == ["c000"]
    assert "limit 1 (rolloutStrategy.maxUnavailable); partition rest" in (p.hold("c001") or "")
    # c000 Ready on the new version: c001 goes next
    after = [TargetState(t.cluster, t.groups, up_to_date=t.name == "c000") for t in targets(5)]
    assert sorted(plan(s, after).go) == ["c001"]


def test_r8_cluster_in_no_group_or_no_partition_follows_fleets_later_fix() -> None:
    # Fleet v0.12 never deploys these two (Pending forever); helmops matches a group-less cluster by name and
    # gives unpartitioned targets a trailing partition.
    s = strategy(partitions=[{"name": "p", "clusterName": "lone"}])
    ts = [TargetState(cluster("lone")), TargetState(cluster("other"), (ALL,))]
    ts = [TargetState(t.cluster, t.groups, up_to_date=False) for t in ts]
    parts = partition_targets(s, ts)
    assert [(n, [t.name for t in m]) for n, _, m in parts] == [("p", ["lone"]), ("Unpartitioned", ["other"])]
    assert plan(s, ts).go == frozenset({"lone", "other"})


def test_two_partitions_zero_percent_stop_while_a_cluster_is_not_ready() -> None:
    """The end-to-end scenario: p1 = {a, b}, p2 = {c, d}, maxUnavailable 0%; a NotReady before the upgrade."""
    s = strategy(
        maxUnavailable="0%",
        partitions=[{"name": "p1", "clusterSelector": {"matchLabels": {"wave": "1"}}},
                    {"name": "p2", "clusterSelector": {"matchLabels": {"wave": "2"}}}],
    )  # fmt: skip

    def state(name: str, wave: str, **kw: Any) -> TargetState:
        return TargetState(cluster(name, wave=wave), (), **kw)

    ts = [state("a", "1", up_to_date=False, unavailable=True), state("b", "1", up_to_date=False),
          state("c", "2", up_to_date=False), state("d", "2", up_to_date=False)]  # fmt: skip
    p = plan(s, ts)
    assert p.go == frozenset({"a"})
    assert p.hold("c") == (
        "rollout: partition p2 waits for partition p1: 2 of 2 clusters not yet updated and ready, limit 1; "
        "1 partition(s) unavailable, limit 0 (rolloutStrategy.maxUnavailablePartitions)"
    )
    # a stays NotReady after its upgrade: nothing more moves
    ts[0] = state("a", "1", unavailable=True)
    assert plan(s, ts).go == frozenset()
    # a recovers: b, then (b ready) c, then d
    ts[0] = state("a", "1")
    assert plan(s, ts).go == frozenset({"b"})
    ts[1] = state("b", "1")
    assert plan(s, ts).go == frozenset({"c"})


def test_limit_error_holds_everything() -> None:
    p = plan(strategy(maxUnavailable="abc"), targets(3))
    assert p.error is not None and p.go == frozenset()
    assert (p.hold("c000") or "").startswith("rollout: rolloutStrategy: invalid value 'abc'")


def test_paused_cluster_is_not_changed_and_uses_no_budget() -> None:
    ts = targets(3)
    ts[0] = TargetState(ts[0].cluster, ts[0].groups, up_to_date=False, paused=True)
    p = plan(strategy(maxUnavailable=1), ts)
    assert p.go == frozenset({"c001"})
