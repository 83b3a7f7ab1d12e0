"""charts/helmops installed with the real helm into a real kube-apiserver (RBAC authorization on).

There is no kubelet or controller-manager, so pods never run: the tests check what the apiserver stores
and what it would authorize the ServiceAccount to do (``kubectl auth can-i --as system:serviceaccount:…``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.charts import helm_env
from support.controlplane import ControlPlane
from support.tools import REPO_ROOT, Tools

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "helmops"


class Helm:
    def __init__(self, tools: Tools, cluster: ControlPlane, home: Path) -> None:
        self.tools = tools
        self.cluster = cluster
        self.env = helm_env(home)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.tools.helm), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )
        if check and out.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out


@pytest.fixture(scope="module")
def helm(tools: Tools, management_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tools, management_cluster, tmp_path_factory.mktemp("helm-home"))


def _names(cluster: ControlPlane, kind: str, namespace: str | None, release: str) -> list[str]:
    scope = ["-n", namespace] if namespace else []
    out = cluster.kubectl("get", kind, *scope, "-l", f"app.kubernetes.io/instance={release}", "-o", "json")
    return sorted(item["metadata"]["name"] for item in json.loads(out.stdout)["items"])


def can_i(cluster: ControlPlane, sa: str, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, "--as", sa, check=False)
    answer = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {out.stdout}{out.stderr}"
    return answer == "yes"


@pytest.fixture(scope="module")
def installed(helm: Helm, management_cluster: ControlPlane) -> Iterator[dict[str, Any]]:
    """helmops enabled, without the local cluster-admin binding: the controller's own RBAC alone."""
    release = f"hops-{secrets.token_hex(3)}"
    ns = f"helmops-chart-{secrets.token_hex(3)}"
    out = helm("install", release, str(CHART), "-n", ns, "--create-namespace",
               "--set", "helmops.enabled=true", "--set", "localClusterAdmin.enabled=false",
               "--set", "shards[0].id=blue", "--set-json", 'tolerations=[{"key":"k","operator":"Exists"}]')
    yield {"release": release, "ns": ns, "sa": f"system:serviceaccount:{ns}:{release}-helmops", "out": out.stdout}
    helm("uninstall", release, "-n", ns, check=False)
    management_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_dry_run_server_succeeds(helm: Helm) -> None:
    ns = f"helmops-dry-{secrets.token_hex(3)}"
    off = helm("install", "helmops", str(CHART), "-n", ns, "--create-namespace", "--dry-run=server")
    assert "--set helmops.enabled=true" in off.stdout  # NOTES.txt says how to enable
    assert "kind: Deployment" not in off.stdout
    on = helm("install", "helmops", str(CHART), "-n", ns, "--create-namespace", "--dry-run=server",
              "--set", "helmops.enabled=true", "--set", "shards[0].id=a", "--set", "priorityClassName=",
              "--set", "replicas=1")
    assert on.stdout.count("kind: Deployment") == 2
    assert "EXPERIMENTAL_HELM_OPS=true" in on.stdout  # NOTES.txt
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"):
        assert f"kind: {kind}" in on.stdout, kind


def test_install_flag_off_creates_no_workload_or_rbac(helm: Helm, management_cluster: ControlPlane) -> None:
    release = f"off-{secrets.token_hex(3)}"
    ns = f"helmops-off-{secrets.token_hex(3)}"
    helm("install", release, str(CHART), "-n", ns, "--create-namespace")
    try:
        for kind in ("deployments", "serviceaccounts", "roles", "rolebindings", "services"):
            assert _names(management_cluster, kind, ns, release) == [], kind
        for kind in ("clusterroles", "clusterrolebindings"):
            assert _names(management_cluster, kind, None, release) == [], kind
        # the CRDs from crds/ are there (installed now, or already present and left alone)
        crds = management_cluster.kubectl("get", "crd", "-o", "name").stdout
        for crd in ("helmapps.fleet.cattle.io", "clusters.fleet.cattle.io", "clustergroups.fleet.cattle.io"):
            assert crd in crds
        status = json.loads(helm("status", release, "-n", ns, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
    finally:
        helm("uninstall", release, "-n", ns, check=False)
        management_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_enabled_creates_the_objects(installed: dict[str, Any], management_cluster: ControlPlane) -> None:
    rel, ns = installed["release"], installed["ns"]
    full = f"{rel}-helmops"
    assert _names(management_cluster, "deployments", ns, rel) == [full, f"{full}-shard-blue"]
    assert _names(management_cluster, "statefulsets", ns, rel) == []
    assert _names(management_cluster, "serviceaccounts", ns, rel) == [full]
    assert _names(management_cluster, "services", ns, rel) == [f"{full}-metrics"]
    assert _names(management_cluster, "roles", ns, rel) == [f"{full}-leader-election"]
    assert _names(management_cluster, "rolebindings", ns, rel) == [f"{full}-leader-election"]
    assert _names(management_cluster, "clusterroles", None, rel) == [full]
    assert _names(management_cluster, "clusterrolebindings", None, rel) == [full]  # no local cluster-admin
    dep = management_cluster.kubectl_json("get", "deployment", full, "-n", ns)
    spec: Any = dep["spec"]
    pod = spec["template"]["spec"]
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["EXPERIMENTAL_HELM_OPS"] == "true"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    shard: Any = management_cluster.kubectl_json("get", "deployment", f"{full}-shard-blue", "-n", ns)["spec"]
    assert "--shard-id" in shard["template"]["spec"]["containers"][0]["args"]
    assert shard["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]


ALLOWED = [
    ("patch", "helmapps.fleet.cattle.io", "--subresource=status", "-n", "fleet-default"),
    ("update", "helmapps.fleet.cattle.io", "--subresource=status", "-n", "fleet-local"),
    ("update", "helmapps.fleet.cattle.io", "--subresource=finalizers", "-n", "fleet-default"),
    ("patch", "helmapps.fleet.cattle.io", "-n", "fleet-default"),
    ("watch", "helmapps.fleet.cattle.io", "--all-namespaces"),
    ("list", "clusters.fleet.cattle.io", "--all-namespaces"),
    ("get", "clustergroups.fleet.cattle.io", "-n", "fleet-default"),
    ("get", "secrets", "-n", "cattle-system"),
    ("list", "secrets", "--all-namespaces"),
    ("get", "configmaps", "-n", "default"),
    ("create", "events", "-n", "fleet-default"),
    ("patch", "events", "-n", "fleet-default"),
]
DENIED = [
    ("delete", "secrets", "-n", "default"),
    ("create", "secrets", "-n", "default"),
    ("update", "secrets", "-n", "cattle-system"),
    ("update", "configmaps", "-n", "default"),
    ("delete", "helmapps.fleet.cattle.io", "-n", "fleet-default"),
    ("create", "helmapps.fleet.cattle.io", "-n", "fleet-default"),
    ("update", "clusters.fleet.cattle.io", "-n", "fleet-default"),
    ("create", "deployments.apps", "-n", "default"),
    ("delete", "namespaces"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "leases.coordination.k8s.io", "-n", "default"),
    ("impersonate", "users"),
    ("get", "bundles.fleet.cattle.io", "-n", "fleet-default"),
]


@pytest.mark.parametrize("args", ALLOWED, ids=[" ".join(a) for a in ALLOWED])
def test_serviceaccount_may(installed: dict[str, Any], management_cluster: ControlPlane, args: tuple[str, ...]) -> None:
    assert can_i(management_cluster, installed["sa"], *args)


@pytest.mark.parametrize("args", DENIED, ids=[" ".join(a) for a in DENIED])
def test_serviceaccount_may_not(
    installed: dict[str, Any], management_cluster: ControlPlane, args: tuple[str, ...]
) -> None:
    assert not can_i(management_cluster, installed["sa"], *args)


def test_leases_only_in_its_own_namespace(installed: dict[str, Any], management_cluster: ControlPlane) -> None:
    sa, ns = installed["sa"], installed["ns"]
    for verb in ("get", "create", "update"):
        assert can_i(management_cluster, sa, verb, "leases.coordination.k8s.io", "-n", ns)
    assert not can_i(management_cluster, sa, "update", "leases.coordination.k8s.io", "-n", "kube-system")
    assert not can_i(management_cluster, sa, "delete", "leases.coordination.k8s.io", "-n", ns)


def test_local_cluster_admin_binding_grants_helm_its_rights(
    installed: dict[str, Any], helm: Helm, management_cluster: ControlPlane
) -> None:
    """The opt-out binding, switched on by an upgrade and off again: helm needs it to install arbitrary charts."""
    rel, ns, sa = installed["release"], installed["ns"], installed["sa"]
    assert not can_i(management_cluster, sa, "create", "deployments.apps", "-n", "default")
    helm("upgrade", rel, str(CHART), "-n", ns, "--reuse-values", "--set", "localClusterAdmin.enabled=true")
    try:
        crbs = _names(management_cluster, "clusterrolebindings", None, rel)
        assert f"{rel}-helmops-local-cluster-admin" in crbs
        admin = f"{rel}-helmops-local-cluster-admin"
        binding: Any = management_cluster.kubectl_json("get", "clusterrolebinding", admin)
        assert binding["roleRef"]["name"] == "cluster-admin"
        assert can_i(management_cluster, sa, "create", "deployments.apps", "-n", "default")
        assert can_i(management_cluster, sa, "delete", "secrets", "-n", "default")
    finally:
        helm("upgrade", rel, str(CHART), "-n", ns, "--reuse-values", "--set", "localClusterAdmin.enabled=false")
    assert f"{rel}-helmops-local-cluster-admin" not in _names(management_cluster, "clusterrolebindings", None, rel)
    assert not can_i(management_cluster, sa, "delete", "secrets", "-n", "default")


def test_uninstall_removes_everything_but_crds(helm: Helm, management_cluster: ControlPlane) -> None:
    release = f"gone-{secrets.token_hex(3)}"
    ns = f"helmops-gone-{secrets.token_hex(3)}"
    helm("install", release, str(CHART), "-n", ns, "--create-namespace", "--set", "helmops.enabled=true")
    assert _names(management_cluster, "deployments", ns, release) == [f"{release}-helmops"]
    helm("uninstall", release, "-n", ns)
    try:
        for kind in ("deployments", "serviceaccounts", "services", "roles"):
            assert _names(management_cluster, kind, ns, release) == [], kind
        for kind in ("clusterroles", "clusterrolebindings"):
            assert _names(management_cluster, kind, None, release) == [], kind
        assert management_cluster.kubectl("get", "crd", "helmapps.fleet.cattle.io", check=False).returncode == 0
    finally:
        management_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_impersonation_only_setup_deploys_with_the_helmapps_serviceaccount(
    helm: Helm, management_cluster: ControlPlane, tools: Tools
) -> None:
    """localClusterAdmin off, serviceAccountImpersonation on: the controller's ServiceAccount holds none of
    helm's rights itself, but helm acting as a tenant's ServiceAccount (``--kube-as-user``, as the controller
    runs it for ``spec.serviceAccount``) installs a chart with exactly that ServiceAccount's rights."""
    cp = management_cluster
    release = f"imp-{secrets.token_hex(3)}"
    ns = f"helmops-imp-{secrets.token_hex(3)}"
    tenant = f"tenant-{secrets.token_hex(3)}"
    helm("install", release, str(CHART), "-n", ns, "--create-namespace", "--set", "helmops.enabled=true",
         "--set", "localClusterAdmin.enabled=false", "--set", "serviceAccountImpersonation.enabled=true")
    try:
        cp.kubectl("create", "namespace", tenant)
        cp.kubectl("create", "serviceaccount", "deployer", "-n", tenant)
        cp.kubectl("create", "role", "deployer", "-n", tenant, "--verb=get,list,watch,create,update,patch,delete",
                   "--resource=configmaps,secrets")
        cp.kubectl("create", "rolebinding", "deployer", "-n", tenant, "--role=deployer",
                   f"--serviceaccount={tenant}:deployer")
        token = cp.kubectl("create", "token", f"{release}-helmops", "-n", ns).stdout.strip()
        as_controller = ["--server", cp.server, "--certificate-authority", str(cp.ca_file), "--token", token]

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(tools.kubectl), "--kubeconfig", "/dev/null", *as_controller, *args],
                                  capture_output=True, text=True, timeout=60, check=False)

        tenant_sa = f"system:serviceaccount:{tenant}:deployer"

        def can(*args: str) -> str:
            return kubectl("auth", "can-i", *args).stdout.strip()

        assert can("create", "configmaps", "-n", tenant) == "no"
        assert can("create", "configmaps", "-n", tenant, "--as", tenant_sa) == "yes"
        assert can("create", "configmaps", "-n", "default", "--as", tenant_sa) == "no"
        # impersonating users (rather than ServiceAccounts) is refused outright
        assert kubectl("auth", "can-i", "get", "secrets", "--as", "admin").returncode != 0
        assert can("get", "secrets", "--as", "admin") != "yes"

        hello = REPO_ROOT / "tests" / "charts" / "hello"
        helm_as = ["--kube-apiserver", cp.server, "--kube-ca-file", str(cp.ca_file), "--kube-token", token,
                   "--kubeconfig", "/dev/null"]
        out = subprocess.run(
            [str(tools.helm), *helm_as, "--kube-as-user", tenant_sa, "install", "hello", str(hello), "-n", tenant],
            env=helm.env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert out.returncode == 0, out.stderr
        assert cp.kubectl("get", "configmap", "hello-hello", "-n", tenant, check=False).returncode == 0
        denied = subprocess.run(
            [str(tools.helm), *helm_as, "--kube-as-user", tenant_sa, "install", "hello", str(hello), "-n", "default"],
            env=helm.env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    finally:
        helm("uninstall", release, "-n", ns, check=False)
        for n in (ns, tenant):
            cp.kubectl("delete", "namespace", n, "--wait=false", check=False)
