"""Fleet-shaped status from several clusters, kstatus-like readiness, and Helm release decoding (pure)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

from helmops.reconcile.manifest import object_refs
from helmops.reconcile.storage import decode_release
from helmops.status import ClusterOutcome, Outcome, ResourceState, State, compute_status, status_patch
from helmops.status.compute import MAX_CLUSTER_IDS, MAX_NON_READY, MAX_PER_CLUSTER_COUNTS
from helmops.status.readiness import readiness

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _cm(state: str = "Ready") -> ResourceState:
    return ResourceState("v1", "ConfigMap", "t", "app-cm", state)


def _dep(state: str = "Ready", message: str = "") -> ResourceState:
    return ResourceState("apps/v1", "Deployment", "t", "app-web", state, message)


def _status(*clusters: ClusterOutcome, **kw: object) -> dict:  # type: ignore[type-arg]
    return compute_status(Outcome("app", "fleet-default", 2, State.READY, clusters=clusters, **kw), None, NOW)  # type: ignore[arg-type]


def _conds(s: dict) -> dict:  # type: ignore[type-arg]
    return {c["type"]: c for c in s["conditions"]}


def test_two_clusters_ready() -> None:
    s = _status(
        ClusterOutcome("a", "fleet-default", State.READY, resources=(_cm(), _dep())),
        ClusterOutcome("b", "fleet-default", State.READY, resources=(_cm(), _dep())),
    )
    assert s["display"] == {"readyBundleDeployments": "2/2", "state": "", "message": "", "error": False}
    assert s["readyClusters"] == 2 and s["desiredReadyClusters"] == 2
    assert s["summary"]["ready"] == 2 and s["summary"]["desiredReady"] == 2
    assert s["resourceCounts"]["ready"] == 4 and s["resourceCounts"]["desiredReady"] == 4
    assert sorted(s["perClusterResourceCounts"]) == ["fleet-default/a", "fleet-default/b"]
    dep = next(r for r in s["resources"] if r["kind"] == "Deployment")
    assert dep["type"] == "apps.deployment" and dep["id"] == "t/app-web" and dep["state"] == "Ready"
    assert dep["perClusterState"] == {"ready": ["fleet-default/a", "fleet-default/b"]}
    assert _conds(s)["Ready"]["status"] == "True"


def test_highest_ranked_state_is_displayed_and_messages_name_clusters() -> None:
    s = _status(
        ClusterOutcome("a", "ns", State.READY, resources=(_cm(),)),
        ClusterOutcome("b", "ns", State.NOT_READY, resources=(_cm(), _dep("NotReady", "0/1 replicas available"))),
        ClusterOutcome("c", "ns", State.ERR_APPLIED, error="unreachable: connection refused"),
    )
    assert s["display"]["state"] == "ErrApplied" and s["display"]["error"] is True
    assert s["display"]["message"] == "cluster c in namespace ns: unreachable: connection refused"
    assert s["display"]["readyBundleDeployments"] == "1/3"
    assert s["summary"]["errApplied"] == 1 and s["summary"]["notReady"] == 1
    assert [e["bundleState"] for e in s["summary"]["nonReadyResources"]] == ["ErrApplied", "NotReady"]
    ready = _conds(s)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "Error"
    assert ready["message"].startswith("ErrApplied(1) [cluster b in namespace ns: not ready: apps.deployment t/app-web")
    assert "cluster c in namespace ns: unreachable" in ready["message"]
    dep = next(r for r in s["resources"] if r["kind"] == "Deployment")
    assert dep["state"] == "NotReady" and dep["perClusterState"] == {"notReady": ["ns/b"]}
    # the unreachable cluster has no resource counts
    assert sorted(s["perClusterResourceCounts"]) == ["ns/a", "ns/b"]


def test_no_cluster_matched() -> None:
    s = _status()
    assert s["display"]["readyBundleDeployments"] == "0/0" and s["desiredReadyClusters"] == 0
    assert _conds(s)["Ready"]["status"] == "True"


def test_status_is_bounded_with_many_clusters() -> None:
    clusters = [ClusterOutcome(f"c{i:03d}", "ns", State.NOT_READY, resources=(_dep("Missing"),)) for i in range(300)]
    s = _status(*clusters)
    assert len(s["summary"]["nonReadyResources"]) == MAX_NON_READY
    assert len(s["perClusterResourceCounts"]) == MAX_PER_CLUSTER_COUNTS
    assert len(s["resources"][0]["perClusterState"]["missing"]) == MAX_CLUSTER_IDS
    assert s["resourceCounts"]["missing"] == 300  # totals stay exact
    assert len(json.dumps(s)) < 64 * 1024
    assert "and 296 more" in _conds(s)["Ready"]["message"]


def test_accepted_error_names_its_cluster() -> None:
    s = _status(
        ClusterOutcome("a", "ns", State.ERR_APPLIED, error="no chart version found"),
        accepted=False,
        accepted_error="no chart version found",
        accepted_cluster=("ns", "a"),
    )
    assert _conds(s)["Accepted"]["message"] == "cluster a in namespace ns: no chart version found"


def test_patch_removes_clusters_no_longer_targeted() -> None:
    before = _status(
        ClusterOutcome("a", "ns", State.READY, resources=(_cm(),)),
        ClusterOutcome("b", "ns", State.READY, resources=(_cm(),)),
    )
    after = _status(ClusterOutcome("a", "ns", State.READY, resources=(_cm(),)))
    patch = status_patch(before, after)["status"]
    assert patch["perClusterResourceCounts"]["ns/b"] is None and patch["perClusterResourceCounts"]["ns/a"]
    local = compute_status(Outcome("app", "ns", 1, State.READY), None, NOW)  # no resources read
    assert status_patch(before, local)["status"]["resources"] is None


def test_readiness_rules() -> None:
    dep = {"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {}}
    assert readiness(dep)[0] == "NotReady"
    dep["status"] = {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 1}
    assert readiness(dep) == ("NotReady", "1/2 replicas available")
    dep["status"]["availableReplicas"] = 2
    assert readiness(dep) == ("Ready", "")
    dep["status"]["observedGeneration"] = 1
    assert readiness(dep)[0] == "NotReady"
    sts = {"kind": "StatefulSet", "spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1}}
    assert readiness(sts)[0] == "Ready"
    ds = {
        "kind": "DaemonSet",
        "status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2},
    }
    assert readiness(ds)[0] == "NotReady"
    job = {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert readiness(job)[0] == "Ready"
    assert readiness({"kind": "Job", "status": {}})[0] == "NotReady"
    assert readiness({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}})[0] == "Ready"
    assert readiness({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}})[0] == "NotReady"
    for kind in ("Service", "ConfigMap", "Secret"):
        assert readiness({"kind": kind})[0] == "Ready"
    assert readiness(None) == ("Missing", "not found")
    custom = {"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "False", "message": "x"}]}}
    assert readiness(custom) == ("NotReady", "x")


def test_release_record_and_manifest() -> None:
    manifest = (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n  namespace: other\n"
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n"
    )
    record = json.dumps({"name": "rel", "manifest": manifest}).encode()
    stored = base64.b64encode(base64.b64encode(gzip.compress(record))).decode()  # as the API returns it
    release = decode_release(stored)
    refs = object_refs(release["manifest"], "t")
    assert [(r.kind, r.namespace, r.name) for r in refs] == [
        ("ConfigMap", "t", "a"),
        ("Deployment", "other", "w"),
        ("ClusterRole", "", "r"),
    ]
