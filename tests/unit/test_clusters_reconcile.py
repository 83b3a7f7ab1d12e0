"""The multi-cluster reconcile with every boundary faked: the management API, per-cluster connections and
helm, chart source and values (one fake helm + release store per cluster)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kube_fake import KubeFake

from helmops.api.objects import HelmApp
from helmops.clusters.connections import ClusterUnreachable
from helmops.clusters.resolve import DEPLOYED_ANNOTATION
from helmops.controller.reconciler import Reconciler, ReconcilerConfig
from helmops.desired.release import FetchedChart, Values
from helmops.helm.driver import ReleaseOutcome, ReleaseSpec
from helmops.kubeio.kube import FINALIZER
from helmops.reconcile.release import FINGERPRINT_LABEL, ReleaseInfo
from tests.unit.test_controller_reconciler import BasicSpec

KEY = ("ns", "app")


class Store:
    """One cluster's Helm releases, and the helm that changes them."""

    def __init__(self) -> None:
        self.releases: dict[tuple[str, str], ReleaseInfo] = {}
        self.calls: list[str] = []
        self.values: dict[str, Any] = {}

    async def read(self, namespace: str, name: str) -> ReleaseInfo | None:
        return self.releases.get((namespace, name))

    def holds(self, namespace: str, name: str) -> bool:
        return False

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome:
        self.calls.append("upgrade")
        self.values = dict(spec.values)
        old = self.releases.get((spec.namespace, spec.name))
        rev = old.revision + 1 if old else 1
        self.releases[(spec.namespace, spec.name)] = ReleaseInfo(
            spec.name, spec.namespace, rev, "deployed", spec.labels[FINGERPRINT_LABEL], datetime.now(tz=UTC),
            dict(spec.labels),
        )  # fmt: skip
        return ReleaseOutcome(rev, "deployed")

    async def uninstall(self, name: str, namespace: str, **_: Any) -> None:
        self.calls.append("uninstall")
        self.releases.pop((namespace, name), None)


class NsKube(KubeFake):
    async def ensure_namespace_metadata(self, *_: Any) -> bool:
        return False


class Conn:
    def __init__(self, name: str, store: Store) -> None:
        self.name, self.namespace, self.local = name, "ns", False
        self.driver = self.releases = store
        self.api = None
        self.kube = NsKube()


class FakeConnections:
    def __init__(self) -> None:
        self.stores = {"a": Store(), "b": Store()}
        self.down: set[str] = set()
        self.forgotten: list[str] = []

    async def get(self, cluster: Mapping[str, Any]) -> Conn:
        name = cluster["metadata"]["name"]
        if name in self.down:
            raise ClusterUnreachable(f"cluster {name} in namespace ns: unreachable: connection refused")
        return Conn(name, self.stores[name])

    async def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)


class FakeKube(KubeFake):
    def __init__(self, obj: dict[str, Any], clusters: list[dict[str, Any]]) -> None:
        self.obj: dict[str, Any] | None = obj
        self.clusters = clusters
        self.events: list[tuple[str, str]] = []

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    async def add_finalizer(self, obj: Mapping[str, Any]) -> None:
        assert self.obj is not None
        self.obj["metadata"].setdefault("finalizers", []).append(FINALIZER)

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None:
        self.obj = None

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        assert self.obj is not None
        self.obj["status"] = {k: v for k, v in patch["status"].items() if v is not None}
        return self.obj

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        assert self.obj is not None
        self.obj["metadata"].setdefault("annotations", {}).update(annotations)

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.clusters)

    async def list_cluster_groups(self, namespace: str) -> list[dict[str, Any]]:
        return []


class FakeCharts:
    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        v = str(helmapp.spec.helm.version or "1.0.0")
        return FetchedChart("hello", v, f"sha256:{v}", Path("/c.tgz"))


class FakeValues:
    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        raise AssertionError("clusters from Cluster objects render with render_for")

    async def render_for(
        self, helmapp: HelmApp, release_namespace: str, cluster: Mapping[str, Any] | None, api: Any
    ) -> Values:
        values = {"cluster": cluster["metadata"]["name"] if cluster else "local"}
        values.update(helmapp.spec.helm.values or {})
        return Values(values, f"sha256:{sorted(values.items())}")


def _cluster(name: str, env: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"env": env}}, "spec": {"kubeConfigSecret": "k"}}


def _setup(targets: list[dict[str, Any]], **spec: Any) -> tuple[Reconciler, FakeKube, FakeConnections]:
    obj = {
        "metadata": {"name": "app", "namespace": "ns", "generation": 1, "resourceVersion": "1", "uid": "u"},
        "spec": {"defaultNamespace": "t", "helm": {"repo": "http://r/", "chart": "hello"}, "targets": targets, **spec},
    }
    kube, conns = FakeKube(obj, [_cluster("a", "prod"), _cluster("b", "dev")]), FakeConnections()
    local = Store()
    r = Reconciler(
        kube,  # type: ignore[arg-type]
        local,  # type: ignore[arg-type]
        local,
        BasicSpec(),
        FakeCharts(),
        FakeValues(),  # type: ignore[arg-type]
        ReconcilerConfig(resync_seconds=600, backoff_base_seconds=1, backoff_cap_seconds=8),
        clusters=conns,  # type: ignore[arg-type]
    )
    return r, kube, conns


def _status(kube: FakeKube) -> dict[str, Any]:
    assert kube.obj is not None
    return dict(kube.obj["status"])


def _deployed(kube: FakeKube) -> list[str]:
    assert kube.obj is not None
    return list(json.loads(kube.obj["metadata"]["annotations"][DEPLOYED_ANNOTATION]))


async def test_each_cluster_gets_its_own_values_and_per_target_options() -> None:
    targets = [{"clusterName": "a", "helm": {"values": {"x": "from-a"}, "version": "2.0.0"}}, {"clusterName": "b"}]
    r, kube, conns = _setup(targets)
    assert await r.reconcile(KEY) == 600
    a, b = conns.stores["a"], conns.stores["b"]
    assert a.values == {"cluster": "a", "x": "from-a"} and b.values == {"cluster": "b"}
    st = _status(kube)
    assert st["display"]["readyBundleDeployments"] == "2/2" and st["version"] in ("2.0.0", "1.0.0")
    assert _deployed(kube) == ["a", "b"]
    # nothing changed: no helm at all
    await r.reconcile(KEY)
    assert a.calls == ["upgrade"] and b.calls == ["upgrade"]


async def test_unreachable_cluster_does_not_block_the_other() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}])
    conns.down.add("b")
    delay = await r.reconcile(KEY)
    assert delay is not None and delay <= 8  # retried with backoff
    assert conns.stores["a"].calls == ["upgrade"]
    st = _status(kube)
    assert st["display"]["readyBundleDeployments"] == "1/2" and st["display"]["state"] == "ErrApplied"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "cluster b in namespace ns: unreachable: connection refused"
    assert _deployed(kube) == ["a", "b"]  # remembered before acting
    conns.down.clear()
    await r.reconcile(KEY)
    assert _status(kube)["display"]["readyBundleDeployments"] == "2/2"


async def test_cluster_that_stops_matching_is_cleaned_up() -> None:
    r, kube, conns = _setup([{"clusterSelector": {"matchLabels": {"env": "prod"}}}])
    await r.reconcile(KEY)
    assert _deployed(kube) == ["a"]
    kube.clusters = [_cluster("a", "dev"), _cluster("b", "prod")]  # relabelled
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade", "uninstall"] and conns.stores["a"].releases == {}
    assert conns.stores["b"].calls == ["upgrade"]
    assert _deployed(kube) == ["b"]
    assert _status(kube)["display"]["readyBundleDeployments"] == "1/1"


async def test_keep_resources_leaves_the_release() -> None:
    r, kube, conns = _setup([{"clusterSelector": {"matchLabels": {"env": "prod"}}}], keepResources=True)
    await r.reconcile(KEY)
    kube.clusters = [_cluster("a", "dev")]
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"] and _deployed(kube) == []


async def test_deleted_cluster_object_is_reported_and_nothing_uninstalled() -> None:
    r, kube, conns = _setup([{"clusterName": "a"}])
    await r.reconcile(KEY)
    kube.clusters = [_cluster("b", "dev")]
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"]
    reason, message = kube.events[-1]
    assert reason == "ClusterGone" and message.startswith("cluster a in namespace ns: the Cluster object is gone")
    assert conns.forgotten == ["a"] and _deployed(kube) == []
    assert _status(kube)["display"]["readyBundleDeployments"] == "0/0"


async def test_paused_cluster_is_out_of_sync() -> None:
    r, kube, conns = _setup([{"clusterName": "a"}])
    kube.clusters[0]["spec"]["paused"] = True
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == []
    st = _status(kube)
    assert st["display"]["state"] == "OutOfSync" and "paused (Cluster)" in st["display"]["message"]


async def test_deletion_uninstalls_everywhere() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}])
    await r.reconcile(KEY)
    assert kube.obj is not None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conns.down.add("b")
    assert await r.reconcile(KEY)  # b unreachable: finalizer kept, retried
    assert kube.obj is not None and conns.stores["a"].releases == {}
    conns.down.clear()
    assert await r.reconcile(KEY) is None
    assert kube.obj is None and conns.stores["b"].releases == {}
