"""The controller's side of targeting: effective per-cluster specs, bookkeeping, kubeconfig checks, the
namespace index that turns Cluster events into HelmApp reconciles (pure parts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helmops.api.parse import parse_helmapp
from helmops.clusters.kubeconfig import KubeconfigRefused, sanitize
from helmops.clusters.resolve import DEPLOYED_ANNOTATION, deployed_clusters, deployed_value
from helmops.clusters.watch import ClusterIndex
from helmops.desired.targets import resolve_targets


def _cluster(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {}}, "spec": spec}


def _app(targets: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"helm": {"chart": "hello", "version": "1.0.0", "values": {"a": 1}}, "targets": targets or [], **spec},
    }


def test_empty_targets_is_the_local_cluster() -> None:
    [t] = resolve_targets(parse_helmapp(_app(paused=True)), [_cluster("other", {"env": "x"})])
    assert (t.name, t.namespace, t.cluster, t.paused) == ("local", "ns", None, True)
    assert "targets" not in t.spec.to_dict()


def test_first_match_wins_with_per_target_options_and_do_not_deploy() -> None:
    targets = [
        {"clusterName": "skip", "doNotDeploy": True},
        {"clusterSelector": {"matchLabels": {"env": "prod"}}, "helm": {"version": "2.0.0", "values": {"b": 2}}},
        {"name": "rest", "clusterSelector": {}, "namespace": "other"},
    ]
    clusters = [
        _cluster("skip", {"env": "prod"}),
        _cluster("p", {"env": "prod"}, paused=True),
        _cluster("d", {"env": "dev"}),
        {"metadata": {"name": "elsewhere", "namespace": "other-ns", "labels": {"env": "prod"}}, "spec": {}},
    ]
    got = {t.name: t for t in resolve_targets(parse_helmapp(_app(targets)), clusters)}
    assert sorted(got) == ["d", "p"]
    p, d = got["p"], got["d"]
    assert p.target_name == "target001" and p.paused
    assert p.spec.to_dict()["helm"]["version"] == "2.0.0" and p.spec.to_dict()["helm"]["values"] == {"a": 1, "b": 2}
    assert d.target_name == "rest" and d.spec.to_dict()["namespace"] == "other" and not d.paused
    assert d.spec.to_dict()["helm"]["version"] == "1.0.0"
    assert d.id == "ns/d" and d.describe() == "cluster d in namespace ns"


def test_cluster_group_targets() -> None:
    groups = [{"metadata": {"name": "g", "namespace": "ns"}, "spec": {"selector": {"matchLabels": {"env": "dev"}}}}]
    clusters = [_cluster("a", {"env": "dev"}), _cluster("b", {"env": "prod"})]
    assert [t.name for t in resolve_targets(parse_helmapp(_app([{"clusterGroup": "g"}])), clusters, groups)] == ["a"]


def test_bookkeeping_annotation() -> None:
    app = _app()
    assert deployed_clusters(app) == []
    app["metadata"]["annotations"] = {DEPLOYED_ANNOTATION: deployed_value(["b", "a", "a"])}
    assert json.loads(app["metadata"]["annotations"][DEPLOYED_ANNOTATION]) == ["a", "b"]
    assert deployed_clusters(app) == ["a", "b"]
    app["metadata"]["annotations"] = {DEPLOYED_ANNOTATION: "not json"}
    assert deployed_clusters(app) == []


def _kc(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }


_EXEC = {"exec": {"command": "aws"}}
_INSECURE = {"server": "https://x", "insecure-skip-tls-verify": True}


@pytest.mark.parametrize(
    ("config", "exec_ok", "insecure_ok", "refused"),
    [
        (_kc({"server": "https://x"}, {"token": "t"}), False, False, None),
        (_kc({"server": "https://x"}, _EXEC), False, False, "exec"),
        (_kc({"server": "https://x"}, _EXEC), True, False, None),
        (_kc(_INSECURE, {}), False, False, "insecure-skip-tls-verify"),
        (_kc(_INSECURE, {}), False, True, None),
        ({"users": []}, True, True, "no contexts"),
        ("just a string", True, True, "not a YAML map"),
    ],
)
def test_kubeconfig_checks(config: Any, exec_ok: bool, insecure_ok: bool, refused: str | None) -> None:
    problem: str | None = None
    try:
        sanitize(config, allow_exec=exec_ok, allow_insecure=insecure_ok)
    except KubeconfigRefused as exc:
        problem = exc.message
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem
        assert "aws" not in problem and "https://x" not in problem  # never echoes the kubeconfig


def test_cluster_events_requeue_only_their_namespace() -> None:
    queued: list[tuple[str, str]] = []
    index = ClusterIndex(queued.append)
    index.helmapp(("ns", "a"), True)
    index.helmapp(("ns", "b"), True)
    index.helmapp(("other", "c"), True)
    cluster = _cluster("x", {"env": "dev"})
    assert index.fleet_event("Cluster", "ADDED", cluster) == [("ns", "a"), ("ns", "b")]
    # the same object again (a status-only update): nothing
    assert index.fleet_event("Cluster", "MODIFIED", {**cluster, "status": {"x": 1}}) == []
    relabelled = _cluster("x", {"env": "prod"})
    assert index.fleet_event("Cluster", "MODIFIED", relabelled) == [("ns", "a"), ("ns", "b")]
    index.helmapp(("ns", "a"), False)
    deleted: list[tuple[str, str]] = []
    index.on_cluster_deleted = lambda ns, name: deleted.append((ns, name))
    assert index.fleet_event("Cluster", "DELETED", relabelled) == [("ns", "b")]
    assert deleted == [("ns", "x")]
    assert ("other", "c") not in queued


def test_namespace_metadata_of_all_targets_is_merged_into_every_cluster() -> None:
    app = _app(
        [
            {"clusterName": "a", "namespaceLabels": {"t1": "x"}},
            {"clusterName": "zz", "namespaceAnnotations": {"n": "y"}},
        ],
        namespaceLabels={"root": "r"},
    )
    [t] = resolve_targets(parse_helmapp(app), [_cluster("a")])
    assert t.spec.to_dict()["namespaceLabels"] == {"root": "r", "t1": "x"}
    assert t.spec.to_dict()["namespaceAnnotations"] == {"n": "y"}
