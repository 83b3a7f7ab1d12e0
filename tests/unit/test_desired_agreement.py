"""The controller and ``helmops render/diff`` run one desired-state pipeline (helmops.desired): for the same
HelmApp and Fleet Clusters/ClusterGroups they pick the same clusters and targets and compute the same spec,
release, chart, values and fingerprint per cluster.

Two rules the CLI used to lack (it matched and merged targets itself): the namespaceLabels and
namespaceAnnotations of *all* targets go into every cluster's spec, and a HelmApp without targets goes to the
local cluster only — the controller consults neither a ``default`` ClusterGroup nor a Cluster named ``local``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kube_fake import KubeFake

from helmops.api import Cluster, ClusterGroup
from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.cli.plan import Inventory, plan, resolve
from helmops.controller.apply import ChartFetches
from helmops.controller.reconciler import Reconciler, ReconcilerConfig
from helmops.desired.adapters import AssembleRenderer, spec_checker
from helmops.desired.release import FetchedChart
from helmops.sources import RepoAuth

NS = "fleet-default"


class FakeCharts:
    """The ChartFetcher both sides get: the version asked for (targets may override it)."""

    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        v = str(helmapp.spec.helm.version or "1.0.0")
        return FetchedChart("hello", v, f"sha256:{v}", Path("/c.tgz"))


class Store:
    async def read(self, namespace: str, name: str) -> None:
        return None

    def holds(self, namespace: str, name: str) -> bool:
        return False


class Downstream:
    def __init__(self, name: str) -> None:
        self.name, self.namespace, self.local = name, NS, False
        self.driver = self.releases = Store()
        self.api = None
        self.kube = object()


class Connections:
    async def get(self, cluster: Mapping[str, Any]) -> Downstream:
        return Downstream(cluster["metadata"]["name"])


class ManagementKube(KubeFake):
    def __init__(self, clusters: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
        self.clusters, self.groups = clusters, groups

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy([c for c in self.clusters if c["metadata"]["namespace"] == namespace])

    async def list_cluster_groups(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy([g for g in self.groups if g["metadata"]["namespace"] == namespace])


def _view(target: str, spec: Mapping[str, Any], desired: Any) -> dict[str, Any]:
    rel = desired.release
    return {
        "target": target,
        "spec": spec,
        "release": (rel.namespace, rel.name),
        "chart": (desired.chart.name, desired.chart.version, desired.chart.digest),
        "values": rel.values,
        "valuesDigest": desired.values_digest,
        "fingerprint": desired.fingerprint,
    }


async def controller_view(
    helmapp: dict[str, Any], clusters: list[dict[str, Any]], groups: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """What the controller's reconcile computes per cluster (its _targets and _desired, real spec and values)."""
    kube = ManagementKube(clusters, groups)
    r = Reconciler(
        kube,  # type: ignore[arg-type]
        Store(),  # type: ignore[arg-type]
        Store(),
        spec_checker(),
        FakeCharts(),
        AssembleRenderer(None),
        ReconcilerConfig(),
        clusters=Connections(),  # type: ignore[arg-type]
    )
    targets, _ = await r._targets(parse_helmapp(helmapp))
    out = {}
    for t in targets:
        desired = await r._desired(t, await r.connect.to(t), ChartFetches(r.charts))
        out[t.id] = _view(t.target_name, t.spec.to_dict(), desired)
    return out


async def cli_view(
    helmapp: dict[str, Any], clusters: list[dict[str, Any]], groups: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """What ``helmops render`` computes per cluster with the same objects as its inventory file."""
    inventory = Inventory(
        tuple(Cluster.model_validate(c) for c in clusters),
        tuple(ClusterGroup.model_validate(g) for g in groups),
        given=True,
    )
    results = await resolve(
        plan(parse_helmapp(helmapp), inventory), auth=RepoAuth(), fetch_charts=True, charts=FakeCharts()
    )
    out = {}
    for res in results:
        assert res.error is None, res.error
        out[res.cluster] = _view(res.plan.target_name, res.plan.helmapp.spec.to_dict(), res.desired)
    return out


def _cluster(name: str, labels: dict[str, str], values: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"kubeConfigSecret": f"{name}-kubeconfig", "templateValues": values or {}},
    }


def _group(name: str, selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "ClusterGroup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": selector},
    }


CLUSTERS = [
    _cluster("local", {"name": "local"}, {"region": "home"}),
    _cluster("dev-1", {"env": "dev"}, {"region": "eu"}),
    _cluster("prod-eu", {"env": "prod", "region": "eu"}, {"region": "eu", "size": 3}),
    _cluster("prod-us", {"env": "prod", "region": "us"}, {"region": "us", "size": 5}),
]
GROUPS = [_group("prod", {"matchLabels": {"env": "prod"}}), _group("default", {})]


def _helmapp(**spec: Any) -> dict[str, Any]:
    helm = {
        "repo": "https://charts.example.com",
        "chart": "hello",
        "version": "1.0.0",
        "values": {"replicas": 1, "name": "${ .ClusterName }"},
    }
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmApp",
        "metadata": {"name": "web", "namespace": NS, "generation": 1, "uid": "u"},
        "spec": {"defaultNamespace": "web", "helm": helm, **spec},
    }


HELMAPPS = {
    "targets with overrides, helm.version per target": _helmapp(
        targets=[
            {
                "name": "eu",
                "clusterSelector": {"matchLabels": {"region": "eu"}},
                "namespace": "web-eu",
                "namespaceLabels": {"team": "eu"},
                "helm": {"version": "2.0.0", "values": {"replicas": 3}},
            },
            {
                "name": "prod",
                "clusterGroup": "prod",
                "namespaceAnnotations": {"owner": "prod"},
                "helm": {"releaseName": "web-prod", "templateValues": {"size": "${ .ClusterValues.size }"}},
            },
            {"name": "dev", "clusterName": "dev-1", "doNotDeploy": True},
            {"name": "rest", "clusterSelector": {}},
        ],
        namespaceLabels={"base": "yes"},
    ),
    "clusterGroupSelector and clusterSelector narrowing": _helmapp(
        targets=[{"name": "us", "clusterGroup": "prod", "clusterSelector": {"matchLabels": {"region": "us"}}}],
    ),
    "no cluster matches": _helmapp(targets=[{"clusterName": "nowhere"}]),
    "no targets, with a default ClusterGroup and a Cluster named local": _helmapp(
        helm={"chart": "hello", "values": {"region": '${ get .ClusterValues "region" }'}}
    ),
    "no targets, paused, forceSyncGeneration": _helmapp(paused=True, forceSyncGeneration=4),
}


@pytest.mark.parametrize("name", sorted(HELMAPPS))
async def test_controller_and_cli_compute_the_same_desired_state(name: str) -> None:
    helmapp = HELMAPPS[name]
    assert await cli_view(helmapp, CLUSTERS, GROUPS) == await controller_view(helmapp, CLUSTERS, GROUPS)


async def test_namespace_metadata_of_all_targets_reaches_every_cluster() -> None:
    got = await cli_view(HELMAPPS["targets with overrides, helm.version per target"], CLUSTERS, GROUPS)
    assert sorted(got) == [f"{NS}/local", f"{NS}/prod-eu", f"{NS}/prod-us"]  # dev-1: doNotDeploy
    for view in got.values():
        assert view["spec"]["namespaceLabels"] == {"base": "yes", "team": "eu"}
        assert view["spec"]["namespaceAnnotations"] == {"owner": "prod"}
    eu, us = got[f"{NS}/prod-eu"], got[f"{NS}/prod-us"]
    assert eu["target"] == "eu" and eu["chart"][1] == "2.0.0" and eu["release"] == ("web-eu", "web")
    assert eu["values"] == {"replicas": 3, "name": "prod-eu"}
    assert us["target"] == "prod" and us["chart"][1] == "1.0.0" and us["release"] == ("web", "web-prod")
    assert us["values"] == {"replicas": 1, "name": "prod-us", "size": 5}


async def test_no_targets_means_the_local_cluster_only_whatever_the_inventory_holds() -> None:
    helmapp = HELMAPPS["no targets, with a default ClusterGroup and a Cluster named local"]
    got = await cli_view(helmapp, CLUSTERS, GROUPS)
    assert list(got) == [f"{NS}/local"]  # not every member of the `default` ClusterGroup
    # the implicit local cluster (Fleet's bootstrap labels), not the inventory's Cluster object named local
    assert got[f"{NS}/local"]["target"] == "default"
    assert got[f"{NS}/local"]["values"] == {"region": None}  # no templateValues: not "home"
