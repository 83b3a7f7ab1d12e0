"""targetRestrictions (helmops.rollout.restrictions through resolve_targets): every worked example of
fleet-rollout.md §3 (T1 to T5), on the code path the controller and ``helmops render`` share."""

from __future__ import annotations

from typing import Any

from helmops.api import Cluster
from helmops.api.parse import parse_helmapp
from helmops.api.spec import BundleTargetRestriction
from helmops.desired.targets import resolve_targets
from helmops.rollout.restrictions import allowed_without_targets, restriction_matches

NS = "fleet-default"
CLUSTERS = [{"metadata": {"name": n, "namespace": NS, "labels": {"name": n}}} for n in ("one", "two", "three")]
GROUPS = [
    {"metadata": {"name": n, "namespace": NS}, "spec": {"selector": {"matchLabels": {"name": n}}}}
    for n in ("one", "two", "three")
] + [{"metadata": {"name": "all", "namespace": NS}, "spec": {"selector": {}}}]


def app(targets: list[dict[str, Any]], restrictions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"helm": {"chart": "c"}, "targets": targets}
    if restrictions is not None:
        spec["targetRestrictions"] = restrictions
    return {"metadata": {"name": "app", "namespace": NS}, "spec": spec}


def deployed(helmapp: dict[str, Any]) -> dict[str, Any]:
    return {t.name: (t.helmapp.spec.helm.values or {}).get("replicas") for t in
            resolve_targets(parse_helmapp(helmapp), CLUSTERS, GROUPS)}  # fmt: skip


ALL2 = {"clusterGroup": "all", "helm": {"values": {"replicas": 2}}}
ONE1 = {"clusterGroup": "one", "helm": {"values": {"replicas": 1}}}


def test_t1_restricted_to_group_one_deploys_one_with_first_targets_options() -> None:
    # Fleet's own integration test: the decision comes from target `one`, the options from target `all`.
    assert deployed(app([ALL2, ONE1], [{"clusterGroup": "one"}])) == {"one": 2}


def test_t2_without_restrictions_all_three_with_replicas_2() -> None:
    assert deployed(app([ALL2, ONE1])) == {"one": 2, "two": 2, "three": 2}
    assert deployed(app([ALL2, ONE1], [])) == {"one": 2, "two": 2, "three": 2}  # 3.1: empty → no effect


def test_t3_restricted_by_cluster_name() -> None:
    assert set(deployed(app([{"clusterGroup": "all"}], [{"clusterName": "two"}]))) == {"two"}


def test_t4_do_not_deploy_of_the_first_matching_target_still_wins() -> None:
    targets: list[dict[str, Any]] = [{"clusterGroup": "one", "doNotDeploy": True}, {"clusterGroup": "all"}]
    assert set(deployed(app(targets, [{"clusterGroup": "all"}]))) == {"two", "three"}


def test_t5_restriction_with_only_a_name_matches_nothing() -> None:
    assert deployed(app([{"clusterGroup": "all"}], [{"name": "x"}])) == {}


def test_same_group_must_serve_target_and_restriction() -> None:
    # target by group `one`, restriction by a group-label selector only `all` has: no common G → nothing.
    groups = [*GROUPS[:3], {**GROUPS[3], "metadata": {"name": "all", "namespace": NS, "labels": {"k": "v"}}}]
    helmapp = app([{"clusterGroup": "one"}], [{"clusterGroupSelector": {"matchLabels": {"k": "v"}}}])
    assert resolve_targets(parse_helmapp(helmapp), CLUSTERS, groups) == []
    # OR across restrictions, AND inside one
    helmapp = app([{"clusterGroup": "all"}], [{"clusterName": "one", "clusterGroup": "two"}, {"clusterName": "three"}])
    assert [t.name for t in resolve_targets(parse_helmapp(helmapp), CLUSTERS, GROUPS)] == ["three"]


def test_cluster_in_no_group_matches_only_group_free_restrictions() -> None:
    lone = Cluster.model_validate({"metadata": {"name": "lone", "namespace": NS, "labels": {"a": "b"}}})
    assert restriction_matches(BundleTargetRestriction(cluster_name="lone"), lone, None)
    assert not restriction_matches(BundleTargetRestriction(cluster_group="all"), lone, None)
    assert not restriction_matches(BundleTargetRestriction(name="x"), lone, None)


def test_helmapp_without_targets_on_the_local_cluster_obeys_restrictions() -> None:
    helmapp: dict[str, Any] = {"metadata": {"name": "app", "namespace": NS}, "spec": {"helm": {"chart": "c"}}}
    assert [t.name for t in resolve_targets(parse_helmapp(helmapp))] == ["local"]
    helmapp["spec"]["targetRestrictions"] = [{"clusterName": "elsewhere"}]
    assert resolve_targets(parse_helmapp(helmapp)) == []
    helmapp["spec"]["targetRestrictions"] = [{"clusterName": "local"}]
    assert [t.name for t in resolve_targets(parse_helmapp(helmapp))] == ["local"]
    assert allowed_without_targets([], Cluster(), [])
