"""ClusterContext filtering (Fleet's rules) and Fleet's options.Merge for per-target overrides."""

from __future__ import annotations

from typing import Any

import pytest

from helmops.values import (
    ClusterContext,
    deep_merge,
    filter_annotations,
    filter_labels,
    merge_deployment_options,
    merge_target_options,
)

LABELS = {
    "env": "prod",
    "kubectl.kubernetes.io/last-applied-configuration": "{}",
    "objectset.rio.cattle.io/hash": "abc",
    "provisioning.cattle.io/x": "1",
    "fleet.cattle.io/cluster-namespace": "fleet-default",
    "management.cattle.io/cluster-name": "c-abc",
    "name": "local",
}


def test_labels_filtered_like_fleet() -> None:
    assert filter_labels(LABELS) == {
        "env": "prod",
        "fleet.cattle.io/cluster-namespace": "fleet-default",
        "management.cattle.io/cluster-name": "c-abc",
        "name": "local",
    }


def test_annotations_have_no_add_back() -> None:
    assert filter_annotations(LABELS) == {"env": "prod", "name": "local"}
    assert filter_annotations(None) == {}


def test_from_cluster_object() -> None:
    cluster = {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": "c1", "namespace": "fleet-default", "labels": LABELS, "annotations": {"a": "1"}},
        "spec": {"templateValues": {"replicas": 3, "db": {"host": "h"}}},
    }
    ctx = ClusterContext.from_cluster(cluster)
    assert (ctx.ClusterName, ctx.ClusterNamespace) == ("c1", "fleet-default")
    assert "kubectl.kubernetes.io/last-applied-configuration" not in ctx.ClusterLabels
    assert ctx.ClusterAnnotations == {"a": "1"}
    assert ctx.ClusterValues == {"replicas": 3, "db": {"host": "h"}}
    # frozen, and templates get copies
    with pytest.raises(AttributeError):
        ctx.name = "x"  # type: ignore[misc]
    data = ctx.template_data()
    data["ClusterValues"]["db"]["host"] = "changed"
    assert ctx.ClusterValues["db"]["host"] == "h"
    cluster["spec"]["templateValues"]["db"]["host"] = "mutated-later"
    assert ctx.ClusterValues["db"]["host"] == "h"


def test_context_is_hashable_and_compares_by_value() -> None:
    a = ClusterContext.local(values={"x": [1, {"y": 2}]})
    b = ClusterContext.local(values={"x": [1, {"y": 2}]})
    assert a == b and hash(a) == hash(b)
    assert len({a, b, ClusterContext.local(name="other")}) == 2


def test_from_cluster_without_spec_or_labels() -> None:
    ctx = ClusterContext.from_cluster({"metadata": {"name": "c2", "namespace": "ns"}})
    assert ctx.template_data() == {
        "ClusterName": "c2",
        "ClusterNamespace": "ns",
        "ClusterLabels": {},
        "ClusterAnnotations": {},
        "ClusterValues": {},
    }
    assert ctx.describe() == "cluster c2 in namespace ns"


def test_local_cluster() -> None:
    ctx = ClusterContext.local()
    assert (ctx.name, ctx.namespace, dict(ctx.labels)) == ("local", "fleet-local", {"name": "local"})
    ctx = ClusterContext.local(name="here", namespace="ns", labels={"env": "dev", "x.cattle.io/y": "z"})
    assert dict(ctx.labels) == {"env": "dev"}


ROOT: dict[str, Any] = {
    "chart": "app",
    "repo": "https://charts.example.com",
    "version": "1.0.0",
    "releaseName": "app",
    "timeoutSeconds": 300,
    "maxHistory": 5,
    "values": {"image": {"repo": "r", "tag": "1"}, "list": [1, 2], "keep": True},
    "templateValues": {"a": "${ .ClusterName }", "b": "root"},
    "valuesFrom": [{"configMapKeyRef": {"name": "root-cm"}}],
    "force": False,
    "atomic": True,
}


@pytest.mark.parametrize(
    ("override", "expect"),
    [
        ({}, {}),
        ({"version": "2.0.0", "chart": ""}, {"version": "2.0.0", "chart": "app"}),
        ({"repo": "https://other", "releaseName": "other"}, {"repo": "https://other", "releaseName": "other"}),
        ({"timeoutSeconds": 600}, {"timeoutSeconds": 600}),
        ({"timeoutSeconds": 0}, {"timeoutSeconds": 300}),
        ({"timeoutSeconds": -1}, {"timeoutSeconds": 0}),
        (
            {"values": {"image": {"tag": "2"}, "list": [3], "extra": None}},
            {"values": {"image": {"repo": "r", "tag": "2"}, "list": [3], "keep": True, "extra": None}},
        ),
        (
            {"templateValues": {"b": "target", "c": "new"}},
            {"templateValues": {"a": "${ .ClusterName }", "b": "target", "c": "new"}},
        ),
        (
            {"valuesFrom": [{"secretKeyRef": {"name": "t-s"}}]},
            {"valuesFrom": [{"configMapKeyRef": {"name": "root-cm"}}, {"secretKeyRef": {"name": "t-s"}}]},
        ),
        (
            {"force": True, "atomic": False, "disablePreProcess": True},
            {"force": True, "atomic": True, "disablePreProcess": True},
        ),
        (
            {"takeOwnership": True, "waitForJobs": True, "disableDNS": True},
            {"takeOwnership": True, "waitForJobs": True, "disableDNS": True},
        ),
        ({"maxHistory": 1, "skipSchemaValidation": True, "disableDependencyUpdate": True}, {}),
    ],
)
def test_merge_target_options(override: dict[str, Any], expect: dict[str, Any]) -> None:
    merged = merge_target_options(ROOT, {"name": "t", "clusterSelector": {}, "helm": override})
    assert merged == {**ROOT, **expect}
    assert ROOT["values"]["image"]["tag"] == "1"  # inputs untouched


def test_merge_without_root_helm_and_without_target_helm() -> None:
    assert merge_target_options(None, {"name": "t", "helm": {"values": {"a": 1}}}) == {"values": {"a": 1}}
    assert merge_target_options(ROOT, {"name": "t"}) == ROOT


def test_values_files_are_not_merged_from_targets() -> None:
    merged = merge_target_options({"valuesFiles": ["a.yaml"]}, {"helm": {"valuesFiles": ["b.yaml"]}})
    assert merged == {"valuesFiles": ["a.yaml"]}


def test_merge_deployment_options_other_fields() -> None:
    root = {"forceSyncGeneration": 2, "deleteNamespace": False, "diff": {"comparePatches": [{"kind": "A"}]}}
    target = {
        "forceSyncGeneration": 5,
        "deleteNamespace": True,
        "correctDrift": {"enabled": True},
        "diff": {"comparePatches": [{"kind": "B"}]},
    }
    assert merge_deployment_options(root, target) == {
        "forceSyncGeneration": 5,
        "deleteNamespace": False,
        "correctDrift": {"enabled": True},
        "diff": {"comparePatches": [{"kind": "A"}, {"kind": "B"}]},
    }
    assert merge_deployment_options(root, {"forceSyncGeneration": 0})["forceSyncGeneration"] == 2


def test_merge_deployment_options() -> None:
    root = {"defaultNamespace": "apps", "namespace": "", "serviceAccount": "sa", "helm": {"chart": "x"}}
    target = {"name": "t", "namespace": "forced", "serviceAccount": "", "keepResources": True, "helm": {"version": "2"}}
    assert merge_deployment_options(root, target) == {
        "defaultNamespace": "apps",
        "namespace": "forced",
        "serviceAccount": "sa",
        "keepResources": True,
        "helm": {"chart": "x", "version": "2"},
    }


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2], "e": {}}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": [2], "e": {}},
        "d": {"x": 1},
    }
