"""A HelmApp's identity for everything done on its behalf, and the operator policy, on the real stack.

A tenant namespace holds a ServiceAccount ``deployer`` with namespace-scoped rights only (a Role in the
release namespace). Every probe below is what that tenant could try: delete or label a namespace it has no
rights on, forge its release record to list another namespace's Secret, read another namespace's Secret
through valuesFrom. Then Fleet's GitRepoRestriction and ``--require-service-account``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
import yaml
from controller_helpers import (
    Cluster,
    Controller,
    HelmLog,
    helmapp,
    make_ns,
    poke,
    wait_for,
    wait_ready,
)

from helmops.reconcile.storage import decode_release, encode_release
from support.tools import reference_dir

pytestmark = pytest.mark.integration

cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published

RESTRICTION_CRD = reference_dir() / "fleet-v0.12.0-gitreporestriction-crd.yaml"
SECRET_VALUE = "tenant-must-never-see-this"


def _established(c: Cluster, crd: str) -> bool:
    obj = c.get("crd", crd, "") or {}
    return any(
        x.get("type") == "Established" and x.get("status") == "True"
        for x in (obj.get("status") or {}).get("conditions") or []
    )


@pytest.fixture(scope="module")
def restriction_crd(cluster: Cluster) -> None:
    # installed before the controller starts, so its first list already sees the kind
    cluster.kubectl("apply", "-f", str(RESTRICTION_CRD))
    wait_for("GitRepoRestriction CRD", lambda: _established(cluster, "gitreporestrictions.fleet.cattle.io"), 60)


@pytest.fixture(scope="module")
def controller(
    cluster: Cluster,
    restriction_crd: None,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    workdir: Path,
) -> Iterator[Controller]:
    ctl = Controller(
        management_cluster, helm_log[0], workdir, namespaces=("sid-*",), HELMOPS_DRIFT_CHECK_PERIOD="2s"
    ).start()
    yield ctl
    assert ctl.stop() == 0, ctl.text()[-4000:]


def _tenant(cluster: Cluster, prefix: str = "sid") -> tuple[str, str]:
    """A tenant namespace with SA ``deployer`` that may manage workloads in ``<ns>-t`` and nothing elsewhere
    (plus ``create namespaces``, which helm's --create-namespace needs at cluster scope)."""
    ns = make_ns(cluster, prefix)
    target = f"{ns}-t"
    cluster.ensure_namespace(target)
    cluster.kubectl("create", "serviceaccount", "deployer", "-n", ns)
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer", "namespace": target},
            # everything a chart here needs, but not the namespace object itself (a Role granting
            # `namespaces` in a namespace covers that very namespace: get/patch/delete of it)
            "rules": [
                {
                    "apiGroups": ["", "apps", "batch"],
                    "resources": [
                        "configmaps",
                        "secrets",
                        "services",
                        "serviceaccounts",
                        "pods",
                        "deployments",
                        "jobs",
                        "events",
                    ],
                    "verbs": ["*"],
                }
            ],
        }
    )
    cluster.kubectl(
        "create", "rolebinding", "deployer", "-n", target, "--role=deployer", f"--serviceaccount={ns}:deployer"
    )
    cluster.kubectl("create", "clusterrole", f"{ns}-create-ns", "--verb=create", "--resource=namespaces")
    cluster.kubectl(
        "create", "clusterrolebinding", f"{ns}-create-ns", f"--clusterrole={ns}-create-ns",
        f"--serviceaccount={ns}:deployer",
    )  # fmt: skip
    return ns, target


def _app(name: str, ns: str, target: str, chart_repo: Any, sa: str | None = "deployer", **spec: Any) -> dict[str, Any]:
    a = helmapp(name, ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    a["spec"].pop("defaultNamespace", None)
    a["spec"]["namespace"] = target
    if sa:
        a["spec"]["serviceAccount"] = sa
    a["spec"].update(spec)
    return a


def _false(c: Cluster, name: str, ns: str, ctype: str) -> str | None:
    cond = c.condition(name, ns, ctype)
    return str(cond["message"]) if cond.get("status") == "False" and cond.get("message") else None


def _event(c: Cluster, name: str, ns: str, reason: str, needle: str = "") -> str | None:
    for e in c.events(name, ns):
        if e.get("reason") == reason and needle in (e.get("message") or ""):
            return str(e["message"])
    return None


def _victim_secret(cluster: Cluster) -> str:
    """Another tenant's namespace with a Secret labelled as Helm-managed (so drift's lists include it)."""
    victim = make_ns(cluster, "victim")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": victim, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
            "stringData": {"password": SECRET_VALUE, "values.yaml": f"password: {SECRET_VALUE}\n"},
        }
    )
    return victim


def _no_leak(cluster: Cluster, ctl: Controller, name: str, ns: str) -> None:
    b64 = base64.b64encode(SECRET_VALUE.encode()).decode()
    status = json.dumps((cluster.helmapp(name, ns) or {}).get("status") or {})
    events = json.dumps([e.get("message") for e in cluster.events(name, ns)])
    for where, text in (("status", status), ("events", events), ("log", ctl.text())):
        assert SECRET_VALUE not in text and b64 not in text, f"secret content in {where}"


# --- namespaces --------------------------------------------------------------------------------------------
def test_delete_namespace_is_done_as_the_service_account(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    """deleteNamespace naming a namespace the SA cannot delete: the namespace survives; Event and log say
    who was denied what."""
    ns, target = _tenant(cluster)
    cluster.apply(_app("delns", ns, target, chart_repo, deleteNamespace=True))
    wait_ready(cluster, "delns", ns)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "delns", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("delns", ns) is None, 120)
    denied = f"serviceAccount {ns}/deployer may not delete namespaces {target}"
    assert wait_for("AccessDenied event", lambda: _event(cluster, "delns", ns, "AccessDenied", denied))
    assert denied in controller.text()
    survivor = cluster.get("namespace", target, "") or {}
    assert survivor and not survivor["metadata"].get("deletionTimestamp")


def test_namespace_labels_are_applied_as_the_service_account(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    ns, target = _tenant(cluster)
    labels = {"team": "a"}
    cluster.apply(_app("labels", ns, target, chart_repo, namespaceLabels=labels, namespaceAnnotations={"x": "y"}))
    denied = f"serviceAccount {ns}/deployer may not get/patch namespaces {target}"
    message = wait_for("denied Ready", lambda: _false(cluster, "labels", ns, "Ready"), 120)
    assert denied in message, message
    assert wait_for("AccessDenied event", lambda: _event(cluster, "labels", ns, "AccessDenied", denied))
    meta = (cluster.get("namespace", target, "") or {})["metadata"]
    assert "team" not in (meta.get("labels") or {}) and "x" not in (meta.get("annotations") or {})
    # the same HelmApp without a serviceAccount is the controller acting, as in Fleet
    cluster.apply(_app("labels", ns, target, chart_repo, sa=None, namespaceLabels=labels))
    wait_for(
        "labels applied", lambda: ((cluster.get("namespace", target, "") or {})["metadata"].get("labels") or {})
        .get("team") == "a", 120,
    )  # fmt: skip


# --- reads on the HelmApp's behalf -------------------------------------------------------------------------
def _drift_checks(ctl: Controller) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(r"^helmops_drift_checks_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_forged_release_record_does_not_disclose_other_namespaces(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    """The release record lives in the release namespace, writable by the tenant: one listing another
    namespace's Secret must not make readiness or drift read (and report) it."""
    ns, target = _tenant(cluster)
    victim = _victim_secret(cluster)
    cluster.apply(_app("forged", ns, target, chart_repo))
    wait_ready(cluster, "forged", ns)
    # revision 2, forged by the tenant: the same release plus the victim's Secret (with other data, so that
    # a drift comparison would report a difference)
    v1 = cluster.get("secret", "sh.helm.release.v1.forged.v1", target)
    assert v1 is not None
    record = decode_release(v1["data"]["release"])
    fake = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": victim},
            "data": {"password": base64.b64encode(b"guess").decode()}}  # fmt: skip
    record["manifest"] = record["manifest"] + "\n---\n" + json.dumps(fake) + "\n"
    record["version"] = 2
    labels = dict(v1["metadata"]["labels"], version="2")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "helm.sh/release.v1",
            "metadata": {"name": "sh.helm.release.v1.forged.v2", "namespace": target, "labels": labels},
            "data": {"release": encode_release(record)},
        }
    )
    cluster.kubectl("label", "--overwrite", "secret", "sh.helm.release.v1.forged.v1", "-n", target, "status=superseded")
    before = _drift_checks(controller)
    poke(cluster, "forged", ns)
    denied = f"serviceAccount {ns}/deployer may not get 1 of its objects (e.g. Secret db in namespace {victim})"
    assert wait_for("readiness denied", lambda: _event(cluster, "forged", ns, "AccessDenied", denied), 120)
    wait_for("two drift checks after the forgery", lambda: _drift_checks(controller) >= before + 2, 60)
    time.sleep(3)  # a drift finding would enqueue a reconcile after HELMOPS_DRIFT_DELAY (5s by default)
    poke(cluster, "forged", ns)
    time.sleep(3)
    status = (cluster.helmapp("forged", ns) or {}).get("status") or {}
    text = json.dumps(status)
    assert "/data/password" not in text and "Modified" not in text, text
    for entry in status.get("resources") or []:
        if entry.get("namespace") == victim:
            assert entry.get("state") not in ("Ready", "Missing"), entry  # neither existence nor absence shown
    assert f"drift: HelmApp {ns}/forged" not in controller.text()
    _no_leak(cluster, controller, "forged", ns)


def test_values_from_is_read_as_the_service_account(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    ns, target = _tenant(cluster)
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": target},
              "stringData": {"values.yaml": f"password: {SECRET_VALUE}\n"}}  # fmt: skip
    cluster.apply(secret)
    ref = [{"secretKeyRef": {"name": "db", "key": "values.yaml"}}]
    # an SA with no rights on the release namespace cannot pull that Secret into values
    denied_app = _app("vf-denied", ns, target, chart_repo, sa="nobody")
    denied_app["spec"]["helm"]["valuesFrom"] = ref
    cluster.apply(denied_app)
    message = wait_for("valuesFrom denied", lambda: _false(cluster, "vf-denied", ns, "Accepted"), 120)
    assert f"serviceAccount {ns}/nobody may not get secrets in namespace {target}" in message, message
    assert wait_for("NotAccepted event", lambda: _event(cluster, "vf-denied", ns, "NotAccepted", "access denied"))
    assert cluster.release_secrets("vf-denied", target) == []
    # without a serviceAccount the controller reads only the HelmApp's own namespace: the release
    # namespace is no longer a way into another namespace's Secrets
    app = _app("vf-nosa", ns, target, chart_repo, sa=None)
    app["spec"]["helm"]["valuesFrom"] = ref
    cluster.apply(app)
    message = wait_for("valuesFrom refused", lambda: _false(cluster, "vf-nosa", ns, "Accepted"), 120)
    assert f"read only from the HelmApp's namespace {ns}" in message, message
    # with a serviceAccount a cross-namespace reference is Fleet's: the account's RBAC decides
    victim = _victim_secret(cluster)
    cross = _app("vf-cross", ns, target, chart_repo)
    cross["spec"]["helm"]["valuesFrom"] = [{"secretKeyRef": {"name": "db", "namespace": victim}}]
    cluster.apply(cross)
    message = wait_for("cross-namespace denied", lambda: _false(cluster, "vf-cross", ns, "Accepted"), 120)
    assert f"serviceAccount {ns}/deployer may not get secrets in namespace {victim}" in message, message
    assert cluster.release_secrets("vf-cross", target) == []
    # with deployer (which may read the release namespace) it works
    ok = _app("vf-ok", ns, target, chart_repo)
    ok["spec"]["helm"]["valuesFrom"] = ref
    cluster.apply(ok)
    wait_ready(cluster, "vf-ok", ns)
    for name in ("vf-denied", "vf-nosa", "vf-cross", "vf-ok"):
        _no_leak(cluster, controller, name, ns)


# --- operator policy ---------------------------------------------------------------------------------------
def test_git_repo_restriction_is_enforced(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
    helm_log: Any,
    tmp_path: Path,
) -> None:
    ns, target = _tenant(cluster)
    other = f"{ns}-other"
    cluster.ensure_namespace(other)
    cluster.kubectl("create", "serviceaccount", "root", "-n", ns)
    cluster.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "GitRepoRestriction",
            "metadata": {"name": "tenant", "namespace": ns},
            "defaultServiceAccount": "deployer",
            "allowedServiceAccounts": ["deployer"],
            "allowedTargetNamespaces": [target],
            "allowedRepoPatterns": ["^" + re.escape(chart_repo.url.rstrip("/"))],
        }
    )
    cluster.apply(_app("good", ns, target, chart_repo, sa=None))  # gets the default serviceAccount
    cluster.apply(_app("wrong-ns", ns, other, chart_repo))
    cluster.apply(_app("wrong-sa", ns, target, chart_repo, sa="root"))
    bad_repo = _app("wrong-repo", ns, target, chart_repo)
    bad_repo["spec"]["helm"]["repo"] = "http://127.0.0.1:9/charts"
    cluster.apply(bad_repo)
    wait_ready(cluster, "good", ns)
    calls = helm_log[1].calls("good")
    assert calls and all(f"system:serviceaccount:{ns}:deployer" in " ".join(c) for c in calls if c[0] != "pull")
    for name, rule in (
        ("wrong-ns", "allowedTargetNamespaces"),
        ("wrong-sa", "allowedServiceAccounts"),
        ("wrong-repo", "allowedRepoPatterns"),
    ):
        message = wait_for(f"{name} refused", lambda name=name: _false(cluster, name, ns, "Accepted"), 120)
        assert rule in message and "GitRepoRestriction tenant" in message, message
        assert wait_for(
            f"{name} event", lambda name=name, rule=rule: _event(cluster, name, ns, "PolicyViolation", rule)
        )
        assert helm_log[1].calls(name) == []  # nothing ran
    assert cluster.release_secrets("wrong-ns", other) == []
    # `helmops render` warns about what the controller would refuse
    manifest = tmp_path / "wrong-ns.json"
    manifest.write_text(json.dumps(_app("wrong-ns", ns, other, chart_repo)))
    argv = [sys.executable, "-m", "helmops.cli.main", "render", "-f", str(manifest), "--values-only",
            "--kubeconfig", str(cluster.cp.kubeconfig)]  # fmt: skip
    cli = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "would refuse this HelmApp: GitRepoRestriction tenant" in cli.stderr, cli.stderr
    assert "allowedTargetNamespaces" in cli.stderr
    # fixing the HelmApp lifts the refusal
    cluster.apply(_app("wrong-sa", ns, target, chart_repo, sa="deployer"))
    wait_ready(cluster, "wrong-sa", ns)


def test_require_service_account(
    cluster: Cluster,
    restriction_crd: None,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    workdir: Path,
    chart_repo: Any,
    published: dict[str, Path],
) -> None:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("sidreq-*",))
    ctl.start_args = ["--require-service-account"]
    ctl.start()
    try:
        ns, target = _tenant(cluster, "sidreq")
        cluster.apply(_app("nosa", ns, target, chart_repo, sa=None))
        cluster.apply(_app("withsa", ns, target, chart_repo))
        message = wait_for("nosa refused", lambda: _false(cluster, "nosa", ns, "Accepted"), 120)
        assert "requires a serviceAccount" in message, message
        assert wait_for("event", lambda: _event(cluster, "nosa", ns, "PolicyViolation", "requireServiceAccount") or
                        _event(cluster, "nosa", ns, "PolicyViolation", "requires a serviceAccount"))  # fmt: skip
        wait_ready(cluster, "withsa", ns)
        assert helm_log[1].calls("nosa") == []
    finally:
        assert ctl.stop() == 0, ctl.text()[-4000:]


# --- a downstream cluster ----------------------------------------------------------------------------------
def test_downstream_calls_act_as_the_service_account(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], downstream_cluster: Any
) -> None:
    """On a downstream cluster the same account is impersonated with the Cluster's kubeconfig: the release
    goes in, the namespace labels it may not patch do not, and the condition names cluster and account."""
    for crd in ("clusters", "clustergroups"):
        cluster.kubectl("apply", "-f", str(e2e.REPO_ROOT / "crds" / f"{crd}.fleet.cattle.io.yaml"))
        wait_for(f"{crd} CRD", lambda crd=crd: _established(cluster, f"{crd}.fleet.cattle.io"), 60)
    down = Cluster(downstream_cluster)
    ns = make_ns(cluster, "sid")
    target = f"{ns}-t"
    down.ensure_namespace(ns)  # the account lives downstream in a namespace named like the HelmApp's
    down.ensure_namespace(target)
    down.kubectl("create", "serviceaccount", "deployer", "-n", ns)
    down.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer", "namespace": target},
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["*"]}],
        }
    )
    down.kubectl(
        "create", "rolebinding", "deployer", "-n", target, "--role=deployer", f"--serviceaccount={ns}:deployer"
    )
    down.kubectl("create", "clusterrole", f"{ns}-create-ns", "--verb=create", "--resource=namespaces")
    down.kubectl(
        "create", "clusterrolebinding", f"{ns}-create-ns", f"--clusterrole={ns}-create-ns",
        f"--serviceaccount={ns}:deployer",
    )  # fmt: skip
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kc-down", "namespace": ns},
            "stringData": {"value": yaml.safe_dump(downstream_cluster.kubeconfig_dict())},
        }
    )
    cluster.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": "down", "namespace": ns},
            "spec": {"kubeConfigSecret": "kc-down"},
        }
    )
    app = _app("remote", ns, target, chart_repo, namespaceLabels={"team": "a"})
    app["spec"]["targets"] = [{"clusterName": "down"}]
    cluster.apply(app)
    denied = f"serviceAccount {ns}/deployer may not get/patch namespaces {target}"
    message = wait_for("denied downstream", lambda: _false(cluster, "remote", ns, "Ready"), 120)
    assert denied in message and "down" in message, message
    assert down.release_status("remote", target) == "deployed"
    labels = (down.get("namespace", target, "") or {})["metadata"].get("labels") or {}
    assert "team" not in labels
