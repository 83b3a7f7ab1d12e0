"""dependsOn (helmops.rollout.depends): every worked example of fleet-rollout.md §2 (D1 to D5) and the rules
around them (per cluster, version-blind, label filtering, self never a dependency)."""

from __future__ import annotations

from helmops.api.spec import BundleRef
from helmops.rollout.depends import BundleView, bundle_labels, deployment_labels, evaluate

NS = "fleet-default"


def ref(**kw: object) -> BundleRef:
    return BundleRef.model_validate(kw)


def view(name: str, states: dict[str, str], **labels: str) -> BundleView:
    return BundleView(name, bundle_labels(name, labels), states)


def test_d1_missing_dependency_is_reported_with_fleets_words() -> None:
    wait = evaluate([ref(name="db")], "app", NS, "c1", [view("db", {"c2": "Ready"})])
    assert wait is not None and wait.missing is not None
    assert wait.message == (
        "list bundledeployments: no bundles matching labels "
        "fleet.cattle.io/bundle-name=db,fleet.cattle.io/bundle-namespace=fleet-default in namespace fleet-default"
    )


def test_d2_dependency_not_ready_on_the_cluster() -> None:
    wait = evaluate([ref(name="db")], "app", NS, "c1", [view("db", {"c1": "NotReady"})])
    assert wait is not None and wait.message == "dependent bundle(s) are not ready: [db]"


def test_d3_ready_on_c1_only_installs_on_c1_only() -> None:
    bundles = [view("db", {"c1": "Ready", "c2": "WaitApplied"})]
    assert evaluate([ref(name="db")], "app", NS, "c1", bundles) is None
    wait = evaluate([ref(name="db")], "app", NS, "c2", bundles)
    assert wait is not None and wait.not_ready == ("db",) and wait.cluster == "c2"


def test_d4_selector_names_the_not_ready_ones() -> None:
    bundles = [view("db", {"c1": "Ready"}, tier="data"), view("cache", {"c1": "NotReady"}, tier="data")]
    wait = evaluate([ref(selector={"matchLabels": {"tier": "data"}})], "app", NS, "c1", bundles)
    assert wait is not None and wait.message == "dependent bundle(s) are not ready: [cache]"


def test_d5_empty_entry_is_ignored() -> None:
    assert evaluate([ref()], "app", NS, "c1", []) is None
    assert evaluate(None, "app", NS, "c1", []) is None


def test_selector_matching_the_helmapp_itself_does_not_deadlock() -> None:
    me = view("app", {"c1": "WaitApplied"}, tier="data")
    db = view("db", {"c1": "Ready"}, tier="data")
    assert evaluate([ref(selector={"matchLabels": {"tier": "data"}})], "app", NS, "c1", [me, db]) is None
    # only itself matches: reported as missing, not waited on forever
    wait = evaluate([ref(selector={"matchLabels": {"tier": "data"}})], "app", NS, "c1", [me])
    assert wait is not None and wait.missing == (
        "list bundledeployments: no bundles matching labels tier=data in namespace fleet-default"
    )


def test_version_blind_and_fails_at_the_first_missing_entry() -> None:
    bundles = [view("db", {"c1": "NotReady"})]
    wait = evaluate([ref(name="db"), ref(name="nope")], "app", NS, "c1", bundles)
    assert wait is not None and wait.missing is not None and "bundle-name=nope" in wait.missing


def test_bundle_deployment_labels_follow_fleet() -> None:
    b = view(
        "db", {}, **{"a": "1", "kubectl.kubernetes.io/x": "y", "management.cattle.io/z": "q", "fleet.cattle.io/k": "v"}
    )
    labels = deployment_labels(b, NS, "c1")
    assert labels["a"] == "1" and labels["fleet.cattle.io/k"] == "v"
    assert "kubectl.kubernetes.io/x" not in labels and "management.cattle.io/z" not in labels
    assert labels["fleet.cattle.io/fleet-helm-name"] == "db" and labels["fleet.cattle.io/cluster"] == "c1"
    wait = evaluate([ref(selector={"matchLabels": {"fleet.cattle.io/fleet-helm-name": "db"}})], "app", NS, "c1",
                    [view("db", {"c1": "Ready"})])  # fmt: skip
    assert wait is None
    expr = ref(selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]}, name="db")
    wait = evaluate([expr], "app", NS, "c1", [])
    assert wait is not None and wait.missing is not None
    assert "fleet.cattle.io/bundle-namespace=fleet-default,tier in (a,b) in namespace" in wait.missing
