"""Multi-cluster targeting end to end: ``helmops run`` on the management control plane deploys to Fleet
Clusters reached through kubeconfig Secrets — the management plane itself (Cluster ``local``, as Fleet names
it: any other name reaching the management plane is refused as a duplicate of the local cluster) and a second
control plane of this module's own (Cluster ``downstream``; its API server is stopped in one test).

Each test works in its own namespace (``mc-*``) with its own Cluster objects.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
import yaml

from support.controlplane import ControlPlane

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = "helmops.cattle.io/deployed-clusters"


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def downstream_cp(tools: Any) -> Iterator[ControlPlane]:
    """This module's own downstream control plane (its API server is stopped and restarted here)."""
    cp = ControlPlane(tools, name="mcdown").start()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> e2e.Cluster:
    return e2e.fleet_crds(e2e.Cluster(management_cluster))


@pytest.fixture(scope="module")
def down(downstream_cp: ControlPlane) -> e2e.Cluster:
    return e2e.Cluster(downstream_cp)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multicluster")


@pytest.fixture(scope="module")
def helm_wrapper(workdir: Path, tools: Any) -> tuple[Path, e2e.HelmLog]:
    log = workdir / "helm-calls.log"
    wrapper = workdir / "helm-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\nexec {shlex.quote(str(tools.helm))} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, e2e.HelmLog(log)


@pytest.fixture(scope="module")
def published(charts: Any, chart_repo: Any) -> None:
    for name in ("hello", "hellodeploy"):
        chart_repo.publish(charts.package(name, "0.1.0"))


@pytest.fixture(scope="module")
def controller(
    mgmt: e2e.Cluster, management_cluster: Any, helm_wrapper: tuple[Path, e2e.HelmLog], workdir: Path, published: None
) -> Iterator[e2e.Controller]:
    ctl = e2e.Controller(management_cluster, helm_wrapper[0], workdir, namespaces=("mc-*",)).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


@pytest.fixture
def ns(mgmt: e2e.Cluster, management_cluster: Any, downstream_cp: ControlPlane) -> str:
    """A namespace with two Fleet Clusters: ``local`` (the management plane, env=prod) and ``downstream`` (env=dev)."""
    name = e2e.make_ns(mgmt, "mc")
    e2e.register_cluster(mgmt, name, "local", management_cluster, {"env": "prod"})
    e2e.register_cluster(mgmt, name, "downstream", downstream_cp, {"env": "dev"})
    return name


def app(
    name: str, ns: str, chart_repo: Any, targets: list[dict[str, Any]], chart: str = "hello", **helm: Any
) -> dict[str, Any]:
    obj = e2e.helmapp(name, ns, repo=chart_repo.url, chart=chart, version="0.1.0", **helm)
    obj["spec"]["targets"] = targets
    return obj


def status(c: e2e.Cluster, name: str, ns: str) -> dict[str, Any]:
    return dict(((c.helmapp(name, ns) or {}).get("status")) or {})


def ready_count(c: e2e.Cluster, name: str, ns: str, want: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = c.helmapp(name, ns) or {}
        st = obj.get("status") or {}
        conds = {x["type"]: x for x in st.get("conditions") or []}
        if (
            st.get("display", {}).get("readyBundleDeployments") == want
            and conds.get("Ready", {}).get("status") == "True"
        ):
            return obj
        return None

    return dict(e2e.wait_for(f"HelmApp {ns}/{name} Ready {want}", check, 120))


def deployed(c: e2e.Cluster, name: str, ns: str) -> list[str]:
    ann = ((c.helmapp(name, ns) or {}).get("metadata") or {}).get("annotations") or {}
    return list(json.loads(ann.get(DEPLOYED, "[]")))


# --- tests -----------------------------------------------------------------------------------------------
def test_target_by_name_renders_cluster_name_and_reports_per_cluster(
    mgmt: e2e.Cluster, down: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    mgmt.apply(app("byname", ns, chart_repo, [{"clusterName": "downstream"}], values={"message": "${ .ClusterName }"}))
    obj = ready_count(mgmt, "byname", ns, "1/1")
    target = f"{ns}-target"
    assert (down.configmap("byname-hello", target) or {}).get("message") == "downstream"
    assert mgmt.configmap("byname-hello", target) is None
    st = obj["status"]
    assert st["readyClusters"] == 1 and st["desiredReadyClusters"] == 1
    cid = f"{ns}/downstream"
    assert st["perClusterResourceCounts"][cid]["ready"] == 1
    assert st["resourceCounts"]["desiredReady"] == 1 and st["resourceCounts"]["ready"] == 1
    res = st["resources"][0]
    assert res["kind"] == "ConfigMap" and res["type"] == "configmap" and res["id"] == f"{target}/byname-hello"
    assert res["perClusterState"]["ready"] == [cid]
    assert deployed(mgmt, "byname", ns) == ["downstream"]

    # deletion uninstalls from the downstream cluster
    mgmt.kubectl("delete", "helmapps.fleet.cattle.io", "byname", "-n", ns, "--wait=false")
    e2e.wait_for("HelmApp gone", lambda: mgmt.helmapp("byname", ns) is None)
    assert down.release_secrets("byname", target) == []


def test_selector_renders_labels_per_cluster(
    mgmt: e2e.Cluster, down: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    targets = [{"clusterSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}]
    template_values = {"extra": "where: ${ .ClusterName }"}
    mgmt.apply(
        app(
            "bysel",
            ns,
            chart_repo,
            targets,
            values={"message": "${ .ClusterLabels.env }"},
            templateValues=template_values,
        )
    )
    obj = ready_count(mgmt, "bysel", ns, "2/2")
    target = f"{ns}-target"
    assert (down.configmap("bysel-hello", target) or {}).get("message") == "dev"
    assert (mgmt.configmap("bysel-hello", target) or {}).get("message") == "prod"
    assert (down.configmap("bysel-hello", target) or {}).get("where") == "downstream"
    assert (mgmt.configmap("bysel-hello", target) or {}).get("where") == "local"
    st = obj["status"]
    assert st["summary"]["ready"] == 2 and st["summary"]["desiredReady"] == 2
    assert sorted(st["perClusterResourceCounts"]) == [f"{ns}/downstream", f"{ns}/local"]
    assert sorted(st["resources"][0]["perClusterState"]["ready"]) == [f"{ns}/downstream", f"{ns}/local"]
    assert deployed(mgmt, "bysel", ns) == ["downstream", "local"]


def test_cluster_group_and_relabel_moves_the_release(
    mgmt: e2e.Cluster, down: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    mgmt.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "ClusterGroup",
            "metadata": {"name": "prod", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"env": "prod"}}},
        }
    )
    mgmt.apply(app("bygroup", ns, chart_repo, [{"clusterGroup": "prod", "helm": {"values": {"message": "grouped"}}}]))
    ready_count(mgmt, "bygroup", ns, "1/1")
    target = f"{ns}-target"
    assert (mgmt.configmap("bygroup-hello", target) or {}).get("message") == "grouped"  # per-target values
    assert down.configmap("bygroup-hello", target) is None

    # relabel: downstream joins the group, mgmt leaves it -> installed there, uninstalled here
    mgmt.kubectl("label", "clusters.fleet.cattle.io", "local", "-n", ns, "env=dev", "--overwrite")
    mgmt.kubectl("label", "clusters.fleet.cattle.io", "downstream", "-n", ns, "env=prod", "--overwrite")
    e2e.wait_for("release on downstream", lambda: down.release_status("bygroup", target) == "deployed")
    e2e.wait_for("release gone from mgmt", lambda: mgmt.release_secrets("bygroup", target) == [])
    obj = ready_count(mgmt, "bygroup", ns, "1/1")
    assert list(obj["status"]["perClusterResourceCounts"]) == [f"{ns}/downstream"]
    e2e.wait_for("bookkeeping", lambda: deployed(mgmt, "bygroup", ns) == ["downstream"])

    # a ClusterGroup change re-targets too: the group now selects nothing
    mgmt.kubectl(
        "patch", "clustergroups.fleet.cattle.io", "prod", "-n", ns, "--type", "merge",
        "-p", json.dumps({"spec": {"selector": {"matchLabels": {"env": "none"}}}}),
    )  # fmt: skip
    e2e.wait_for("release gone from downstream", lambda: down.release_secrets("bygroup", target) == [])
    e2e.wait_for("0/0", lambda: status(mgmt, "bygroup", ns).get("desiredReadyClusters") == 0)


def test_resource_readiness_from_live_objects(
    mgmt: e2e.Cluster, down: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    mgmt.apply(app("rdy", ns, chart_repo, [{"clusterName": "downstream"}], chart="hellodeploy"))
    cid = f"{ns}/downstream"

    def not_ready() -> dict[str, Any] | None:
        st = status(mgmt, "rdy", ns)
        return st if st.get("summary", {}).get("notReady") == 1 else None

    st = e2e.wait_for("NotReady (Deployment not available)", not_ready, 120)
    assert st["display"]["readyBundleDeployments"] == "0/1" and st["display"]["state"] == "NotReady"
    deploy = next(r for r in st["resources"] if r["kind"] == "Deployment")
    assert deploy["type"] == "apps.deployment" and deploy["state"] == "NotReady"
    assert deploy["perClusterState"]["notReady"] == [cid]
    assert st["perClusterResourceCounts"][cid] == {
        "ready": 1, "desiredReady": 2, "waitApplied": 0, "modified": 0, "orphaned": 0, "missing": 0,
        "unknown": 0, "notReady": 1,
    }  # fmt: skip
    ready_cond = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == "False" and f"cluster downstream in namespace {ns}: " in ready_cond["message"]

    # the Deployment becomes available -> Ready
    avail = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    down.kubectl(
        "patch", "deployment", "rdy-web", "-n", f"{ns}-target", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": avail}),
    )  # fmt: skip
    obj = ready_count(mgmt, "rdy", ns, "1/1")
    assert obj["status"]["resourceCounts"]["ready"] == 2 and obj["status"]["resourceCounts"]["notReady"] == 0

    # a deleted object counts as missing
    down.kubectl("delete", "configmap", "rdy-cm", "-n", f"{ns}-target")
    e2e.poke(mgmt, "rdy", ns)
    e2e.wait_for("missing ConfigMap", lambda: status(mgmt, "rdy", ns).get("resourceCounts", {}).get("missing") == 1)


def test_deleted_cluster_object_is_reported_not_uninstalled(
    mgmt: e2e.Cluster, down: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    mgmt.apply(app("gone", ns, chart_repo, [{"clusterName": "downstream"}]))
    ready_count(mgmt, "gone", ns, "1/1")
    target = f"{ns}-target"
    mgmt.kubectl("delete", "clusters.fleet.cattle.io", "downstream", "-n", ns)
    e2e.wait_for("ClusterGone event", lambda: "ClusterGone" in mgmt.event_reasons("gone", ns))
    ev = next(e for e in mgmt.events("gone", ns) if e["reason"] == "ClusterGone")
    assert f"cluster downstream in namespace {ns}" in ev["message"] and "not uninstalled" in ev["message"]
    assert down.release_status("gone", target) == "deployed"  # left in place
    e2e.wait_for("0/0", lambda: status(mgmt, "gone", ns).get("display", {}).get("readyBundleDeployments") == "0/0")
    e2e.wait_for("bookkeeping", lambda: deployed(mgmt, "gone", ns) == [])


def test_exec_kubeconfig_is_refused_naming_the_cluster(
    mgmt: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, downstream_cp: ControlPlane, ns: str
) -> None:
    kc = downstream_cp.kubeconfig_dict()
    kc["users"] = [
        {"name": "admin", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "true"}}}
    ]
    mgmt.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kc-execy", "namespace": ns},
            "stringData": {"value": yaml.safe_dump(kc)},
        }
    )
    mgmt.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": "execy", "namespace": ns},
            "spec": {"kubeConfigSecret": "kc-execy"},
        }
    )
    mgmt.apply(app("refused", ns, chart_repo, [{"clusterName": "execy"}]))

    def refused() -> str | None:
        st = status(mgmt, "refused", ns)
        msg = str(st.get("display", {}).get("message") or "")
        return msg if "refused" in msg else None

    msg = e2e.wait_for("refusal reported", refused, 90)
    assert msg.startswith(f"cluster execy in namespace {ns}: kubeconfig secret {ns}/kc-execy refused: ")
    assert "exec credential plugin" in msg and "--allow-exec-kubeconfig" in msg


def test_shards_split_helmapps(
    mgmt: e2e.Cluster,
    down: e2e.Cluster,
    controller: e2e.Controller,
    management_cluster: Any,
    helm_wrapper: tuple[Path, e2e.HelmLog],
    workdir: Path,
    chart_repo: Any,
    ns: str,
) -> None:
    blue = e2e.Controller(management_cluster, helm_wrapper[0], workdir, namespaces=("mc-*",))
    blue.start_args = ["--shard-id", "blue"]
    blue.start()
    try:
        shard_app = app("sharded", ns, chart_repo, [{"clusterName": "downstream"}])
        shard_app["metadata"]["labels"] = {"fleet.cattle.io/shard-ref": "blue"}
        mgmt.apply(shard_app)
        mgmt.apply(app("unsharded", ns, chart_repo, [{"clusterName": "downstream"}]))
        ready_count(mgmt, "sharded", ns, "1/1")
        ready_count(mgmt, "unsharded", ns, "1/1")
        assert f"reconcile {ns}/sharded:" in blue.text() and f"reconcile {ns}/unsharded:" not in blue.text()
        assert f"reconcile {ns}/unsharded:" in controller.text() and f"reconcile {ns}/sharded:" not in controller.text()
        # a Cluster change re-queues only the shard's own HelmApps in each controller
        mgmt.kubectl("label", "clusters.fleet.cattle.io", "downstream", "-n", ns, "tier=x")
        time.sleep(1)
        assert f"reconcile {ns}/sharded:" not in controller.text()
        mgmt.kubectl("delete", "helmapps.fleet.cattle.io", "sharded", "-n", ns, "--wait=false")
        e2e.wait_for("sharded HelmApp gone", lambda: mgmt.helmapp("sharded", ns) is None)
    finally:
        assert blue.stop() == 0, blue.text()[-3000:]


def test_unreachable_cluster_does_not_block_others_then_converges(
    mgmt: e2e.Cluster,
    down: e2e.Cluster,
    downstream_cp: ControlPlane,
    controller: e2e.Controller,
    chart_repo: Any,
    ns: str,
) -> None:
    targets = [{"clusterSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}]
    mgmt.apply(app("outage", ns, chart_repo, targets, values={"message": "v1"}))
    ready_count(mgmt, "outage", ns, "2/2")
    target = f"{ns}-target"
    downstream_cp.stop_apiserver()
    try:
        e2e.merge_patch(mgmt, "outage", ns, {"spec": {"helm": {"values": {"message": "v2"}}}})
        e2e.wait_for("mgmt upgraded", lambda: (mgmt.configmap("outage-hello", target) or {}).get("message") == "v2")

        def reported() -> dict[str, Any] | None:
            st = status(mgmt, "outage", ns)
            ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
            ok = st.get("readyClusters") == 1 and f"cluster downstream in namespace {ns}" in ready.get("message", "")
            return st if ok else None

        st = e2e.wait_for("unreachable cluster reported", reported, 120)
        assert st["display"]["readyBundleDeployments"] == "1/2" and st["display"]["state"] == "ErrApplied"
        assert st["perClusterResourceCounts"][f"{ns}/local"]["ready"] == 1
    finally:
        downstream_cp.restart_apiserver()
    ready_count(mgmt, "outage", ns, "2/2")
    assert (down.configmap("outage-hello", target) or {}).get("message") == "v2"
