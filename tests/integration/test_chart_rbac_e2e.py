"""The chart's least-privilege mode is enough to run the controller: ``helmops run`` started with the exact
arguments and environment of the installed Deployment, authenticated as the chart's ServiceAccount (a real
token), against a real kube-apiserver, the real helm and an HTTP chart repo.

Values: ``localClusterAdmin.enabled=false``, ``serviceAccountImpersonation.enabled=true`` and ``replicas=2``
(two processes campaign for the Lease with the chart's Role). The controller watches, writes status and
Events and reads helm's release Secrets with its own ClusterRole; helm installs a HelmApp's chart only as the
ServiceAccount the HelmApp names, and is refused without one.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.charts import helm_env
from support.controlplane import ControlPlane
from support.tools import REPO_ROOT, Tools

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "helmops"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def helm(tools: Tools, cluster: ControlPlane, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [str(tools.helm), "--kubeconfig", str(cluster.kubeconfig), *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


class Setup:
    def __init__(self, cluster: ControlPlane, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.tag = secrets.token_hex(3)
        self.release = f"rbac-{self.tag}"
        self.system_ns = f"helmops-rbac-{self.tag}"
        self.tenant = f"tenant-rbac-{self.tag}"
        self.procs: list[subprocess.Popen[bytes]] = []
        #: one per started "pod": its Deployment, log file, health and metrics ports
        self.pods: list[dict[str, Any]] = []

    @property
    def logs(self) -> list[Path]:
        return [p["log"] for p in self.pods]

    def pods_of(self, deployment: str) -> list[dict[str, Any]]:
        return [p for p in self.pods if p["deployment"] == deployment]

    def alive(self) -> None:
        for proc, pod in zip(self.procs, self.pods, strict=True):
            assert proc.poll() is None, pod["log"].read_text()[-4000:]

    def log_text(self) -> str:
        leases = self.cluster.kubectl("get", "leases", "-n", self.system_ns, "-o", "yaml", check=False).stdout
        logs = "\n".join(f"--- {log.name}\n{log.read_text()[-5000:]}" for log in self.logs)
        return f"{logs}\n--- leases in {self.system_ns}\n{leases}"

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None


@pytest.fixture(scope="module")
def setup(
    tools: Tools, management_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    cp = management_cluster
    s = Setup(cp, tmp_path_factory.mktemp("chart-rbac"))
    henv = helm_env(s.work / "helm-admin")
    helm(tools, cp, henv, "install", s.release, str(CHART), "-n", s.system_ns, "--create-namespace",
         "--set", "helmops.enabled=true", "--set", "localClusterAdmin.enabled=false",
         "--set", "serviceAccountImpersonation.enabled=true", "--set", f"watchNamespaces[0]={s.tenant}",
         "--set", "controller.backoffBaseSeconds=1", "--set", "controller.backoffCapSeconds=3",
         "--set", "replicas=2", "--set", "leaderElection.leaseDuration=15s",
         "--set", "leaderElection.renewDeadline=10s", "--set", "leaderElection.retryPeriod=1s",
         "--set", "shards[0].id=blue")
    cp.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io", "--timeout=60s")

    # the tenant: a ServiceAccount allowed to manage ConfigMaps and Secrets (helm's storage) in its namespace
    cp.kubectl("create", "namespace", s.tenant)
    cp.kubectl("create", "serviceaccount", "deployer", "-n", s.tenant)
    cp.kubectl("create", "role", "deployer", "-n", s.tenant, "--verb=get,list,watch,create,update,patch,delete",
               "--resource=configmaps,secrets")
    cp.kubectl("create", "rolebinding", "deployer", "-n", s.tenant, "--role=deployer",
               f"--serviceaccount={s.tenant}:deployer")
    # The controller passes helm --create-namespace also when impersonating, and helm then creates the release
    # namespace as the HelmApp's ServiceAccount: Kubernetes checks "create namespaces" at cluster scope even
    # when the namespace exists. Until the controller creates the namespace itself, the tenant needs this.
    cp.kubectl("create", "clusterrole", f"create-namespaces-{s.tag}", "--verb=create", "--resource=namespaces")
    cp.kubectl("create", "clusterrolebinding", f"create-namespaces-{s.tag}", f"--clusterrole=create-namespaces-{s.tag}",
               f"--serviceaccount={s.tenant}:deployer")

    # the controller's credentials: a token of the chart's ServiceAccount, nothing of the admin's
    sa = f"{s.release}-helmops"
    token = cp.kubectl("create", "token", sa, "-n", s.system_ns, "--duration=2h").stdout.strip()
    kubeconfig = s.work / "sa-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": s.system_ns}}],
    }))
    kubeconfig.chmod(0o600)

    # each installed Deployment's own arguments and environment, adapted to processes outside pods:
    # two replicas of the default Deployment (leader election) and one of the shard's
    for deployment in (sa, sa, f"{sa}-shard-blue"):
        dep = json.loads(cp.kubectl("get", "deployment", deployment, "-n", s.system_ns, "-o", "json").stdout)
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert ("--leader-elect" in container["args"]) is (dep["spec"]["replicas"] == 2)
        n = len(s.pods)
        log = s.work / f"{deployment}-{n}.log"
        args = list(container["args"])
        health, metrics = free_port(), free_port()
        args[args.index("--health-port") + 1] = str(health)
        args[args.index("--metrics-port") + 1] = str(metrics)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELMOPS_", "EXPERIMENTAL_", "KUBECONFIG"))}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
        env["NAMESPACE"] = s.system_ns  # the downward API in a pod
        env["POD_NAME"] = f"{sa}-pod-{n}"
        env["HELMOPS_METRICS_BIND_ADDRESS"] = f"127.0.0.1:{metrics}"
        s.pods.append({"deployment": deployment, "log": log, "health": health, "metrics": metrics})
        home = s.work / f"home-{n}"
        for var, sub in (("HOME", ""), ("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                         ("HELM_DATA_HOME", "data"), ("TMPDIR", "tmp")):
            (home / sub).mkdir(parents=True, exist_ok=True)
            env[var] = str(home / sub)
        env["HELMOPS_HELM"] = str(tools.helm)
        assert env["EXPERIMENTAL_HELM_OPS"] == "true"
        argv = [sys.executable, "-m", "helmops.cli.main", *args, "--kubeconfig", str(kubeconfig)]
        with open(log, "ab") as out:
            s.procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=s.work))
    try:
        yield s
    finally:
        for proc in s.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in s.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for app in ("allowed", "refused", "sharded"):
            cp.kubectl("patch", "helmapps.fleet.cattle.io", app, "-n", s.tenant, "--type", "merge",
                       "-p", '{"metadata":{"finalizers":null}}', check=False)
            cp.kubectl("delete", "helmapps.fleet.cattle.io", app, "-n", s.tenant, "--wait=false", check=False)
        subprocess.run([str(tools.helm), "--kubeconfig", str(cp.kubeconfig), "uninstall", s.release,
                        "-n", s.system_ns], env=henv, capture_output=True, timeout=120, check=False)
        for kind in ("clusterrolebinding", "clusterrole"):
            cp.kubectl("delete", kind, f"create-namespaces-{s.tag}", "--wait=false", check=False)
        for ns in (s.system_ns, s.tenant):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def helmapp(
    name: str, ns: str, repo: str, service_account: str | None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "defaultNamespace": ns,
        "helm": {"repo": repo, "chart": "hello", "version": "0.1.0", "releaseName": name,
                 "values": {"message": f"from {name}"}},
    }
    if service_account:
        spec["serviceAccount"] = service_account
    return {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


@pytest.fixture(scope="module")
def repo(charts: Any, chart_repo: Any) -> str:
    chart_repo.publish(charts.package("hello", "0.1.0"))
    return str(chart_repo.url)


def test_helmapp_with_its_serviceaccount_is_installed_by_impersonation(setup: Setup, repo: str) -> None:
    s = setup
    s.cluster.kubectl("apply", "-f", "-", input=json.dumps(helmapp("allowed", s.tenant, repo, "deployer")))

    def ready() -> dict[str, Any] | None:
        s.alive()
        obj = s.get("helmapps.fleet.cattle.io", "allowed", s.tenant)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    try:
        wait_for("HelmApp allowed Ready", ready)
    except AssertionError:
        raise AssertionError(s.log_text()) from None
    cm = s.get("configmap", "allowed-hello", s.tenant)
    assert cm is not None and cm["data"]["message"] == "from allowed"
    # the release is recorded by helm acting as the tenant's ServiceAccount
    out = s.cluster.kubectl("get", "secrets", "-n", s.tenant, "-l", "owner=helm,name=allowed", "-o", "name")
    assert out.stdout.strip()


def test_helmapp_without_serviceaccount_is_refused_and_reported(setup: Setup, repo: str) -> None:
    """The controller's own rights do not let helm write anything: the status and an Event say forbidden."""
    s = setup
    s.cluster.kubectl("apply", "-f", "-", input=json.dumps(helmapp("refused", s.tenant, repo, None)))

    def reported() -> str:
        s.alive()
        obj = s.get("helmapps.fleet.cattle.io", "refused", s.tenant)
        text = json.dumps((obj or {}).get("status") or {})
        return text if "forbidden" in text.lower() else ""

    try:
        wait_for("HelmApp refused reports forbidden", reported)
    except AssertionError:
        raise AssertionError(s.log_text()) from None
    assert s.get("configmap", "refused-hello", s.tenant) is None
    events = json.loads(s.cluster.kubectl("get", "events", "-n", s.tenant, "--field-selector",
                                          "involvedObject.name=refused", "-o", "json").stdout)["items"]
    assert events, "the controller could not post an Event"


def test_deleting_the_helmapp_uninstalls_as_the_serviceaccount(setup: Setup, repo: str) -> None:
    s = setup
    if s.get("configmap", "allowed-hello", s.tenant) is None:
        pytest.skip("needs the installed release of the first test")
    s.cluster.kubectl("delete", "helmapps.fleet.cattle.io", "allowed", "-n", s.tenant, "--wait=false")
    try:
        wait_for("HelmApp allowed gone", lambda: s.get("helmapps.fleet.cattle.io", "allowed", s.tenant) is None)
    except AssertionError:
        raise AssertionError(s.log_text()) from None
    assert s.get("configmap", "allowed-hello", s.tenant) is None


def test_one_leader_holds_the_lease_in_the_release_namespace(setup: Setup) -> None:
    """The chart's Role is enough to campaign: exactly one of the default Deployment's two processes leads
    and reconciles; the probe path and the metrics port the chart configures answer on the leader."""
    s = setup
    s.alive()
    lease = s.get("lease", "helmops-leader-election", s.system_ns)
    assert lease is not None, s.log_text()
    assert lease["spec"]["holderIdentity"].startswith(f"{s.release}-helmops-pod-")
    default = s.pods_of(f"{s.release}-helmops")
    leaders = [p for p in default if "leads" in p["log"].read_text()]
    assert len(leaders) == 1, s.log_text()
    (follower,) = (p for p in default if p is not leaders[0])
    assert "reconcile " not in follower["log"].read_text(), s.log_text()
    leader = leaders[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{leader['health']}/healthz", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{leader['metrics']}/metrics", timeout=10) as resp:
        assert resp.status == 200 and b"# TYPE" in resp.read()


def test_shard_deployment_reconciles_only_its_helmapps(setup: Setup, repo: str) -> None:
    """shards[0].id=blue: the shard's Deployment (``--shard-id blue``) installs a HelmApp labelled
    fleet.cattle.io/shard-ref=blue; the default Deployment's processes never touch it."""
    s = setup
    labels = {"fleet.cattle.io/shard-ref": "blue"}
    s.cluster.kubectl("apply", "-f", "-",
                      input=json.dumps(helmapp("sharded", s.tenant, repo, "deployer", labels)))

    def ready() -> dict[str, Any] | None:
        s.alive()
        obj = s.get("helmapps.fleet.cattle.io", "sharded", s.tenant)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    try:
        wait_for("HelmApp sharded Ready", ready)
    except AssertionError:
        raise AssertionError(s.log_text()) from None
    assert s.get("configmap", "sharded-hello", s.tenant) is not None
    (shard,) = s.pods_of(f"{s.release}-helmops-shard-blue")
    assert f"{s.tenant}/sharded" in shard["log"].read_text()
    for pod in s.pods_of(f"{s.release}-helmops"):
        assert f"{s.tenant}/sharded" not in pod["log"].read_text(), s.log_text()
    assert f"{s.tenant}/allowed" not in shard["log"].read_text()
