"""Fleet target matching (helmops.clusters.targeting): order, first match wins, doNotDeploy, groups, defaults."""

from __future__ import annotations

from typing import Any

import pytest

from helmops.api import BundleTarget, Cluster, ClusterGroup
from helmops.clusters.targeting import cluster_groups, first_matching_target, match_targets


def cluster(name: str, ns: str = "fleet-default", **labels: str) -> Cluster:
    return Cluster.model_validate({"metadata": {"name": name, "namespace": ns, "labels": labels}})


def group(name: str, selector: dict[str, Any] | None, ns: str = "fleet-default", **labels: str) -> ClusterGroup:
    spec = {} if selector is None else {"selector": selector}
    return ClusterGroup.model_validate({"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})


def targets(*raw: dict[str, Any]) -> list[BundleTarget]:
    return [BundleTarget.model_validate(t) for t in raw]


CLUSTERS = [
    cluster("dev-1", env="dev"),
    cluster("prod-eu", env="prod", region="eu"),
    cluster("prod-us", env="prod", region="us"),
    cluster("other-ns", ns="elsewhere", env="prod"),
]
GROUPS = [
    group("prod", {"matchLabels": {"env": "prod"}}, tier="critical"),
    group("all", {}),
    group("none", None),
]


def names(matches: list[Any]) -> list[tuple[str, str]]:
    return [(m.cluster.metadata.name, m.target_name) for m in matches]


def test_first_matching_target_wins_in_order() -> None:
    ts = targets(
        {"name": "eu", "clusterSelector": {"matchLabels": {"region": "eu"}}},
        {"name": "prod", "clusterGroup": "prod"},
        {"name": "rest", "clusterSelector": {}},
    )
    assert names(match_targets(ts, "fleet-default", CLUSTERS, GROUPS)) == [
        ("dev-1", "rest"),
        ("prod-eu", "eu"),
        ("prod-us", "prod"),
    ]


def test_do_not_deploy_excludes_even_if_a_later_target_matches() -> None:
    ts = targets(
        {"clusterName": "prod-us", "doNotDeploy": True},
        {"clusterSelector": {"matchLabels": {"env": "prod"}}},
    )
    assert names(match_targets(ts, "fleet-default", CLUSTERS, GROUPS)) == [("prod-eu", "target001")]


def test_cluster_group_selector_and_narrowing_cluster_selector() -> None:
    ts = targets(
        {
            "name": "critical-eu",
            "clusterGroupSelector": {"matchLabels": {"tier": "critical"}},
            "clusterSelector": {"matchLabels": {"region": "eu"}},
        }
    )
    assert names(match_targets(ts, "fleet-default", CLUSTERS, GROUPS)) == [("prod-eu", "critical-eu")]


def test_group_membership_empty_selector_all_missing_selector_none() -> None:
    member = [g.metadata.name for g in cluster_groups(CLUSTERS[0], GROUPS)]
    assert member == ["all"]
    assert [g.metadata.name for g in cluster_groups(CLUSTERS[1], GROUPS)] == ["prod", "all"]


def test_target_without_criteria_matches_nothing() -> None:
    assert first_matching_target(targets({"name": "empty"}), CLUSTERS[0], GROUPS) is None


def test_cluster_name_and_selector_must_both_hold() -> None:
    ts = targets({"clusterName": "prod-eu", "clusterSelector": {"matchLabels": {"env": "dev"}}})
    assert match_targets(ts, "fleet-default", CLUSTERS, GROUPS) == []


def test_clusters_of_other_namespaces_are_not_candidates() -> None:
    ts = targets({"clusterSelector": {}})
    assert "other-ns" not in [n for n, _ in names(match_targets(ts, "fleet-default", CLUSTERS, GROUPS))]


def test_empty_targets_use_the_default_group_when_it_exists() -> None:
    groups = [group("default", {"matchLabels": {"env": "dev"}})]
    assert names(match_targets([], "fleet-default", CLUSTERS, groups)) == [("dev-1", "default")]


def test_empty_targets_without_default_group_mean_the_local_cluster() -> None:
    (m,) = match_targets([], "apps", [], [])
    assert (m.cluster_id, m.target, m.cluster.metadata.labels) == ("apps/local", None, {"name": "local"})


def test_clusters_without_namespace_belong_to_the_helmapp_namespace() -> None:
    bare = Cluster.model_validate({"metadata": {"name": "c", "labels": {"a": "b"}}})
    (m,) = match_targets(targets({"clusterSelector": {"matchLabels": {"a": "b"}}}), "ns1", [bare])
    assert m.cluster_id == "ns1/c"


def test_malformed_selector_raises() -> None:
    ts = targets({"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}})
    with pytest.raises(ValueError, match="Bogus"):
        match_targets(ts, "fleet-default", CLUSTERS, GROUPS)
