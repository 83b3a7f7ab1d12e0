"""``helmops diff``, ``status`` and ``promote`` against a real kube-apiserver with the CRDs installed, releases
made by the real helm binary and HelmApp status written through the status subresource (no controller runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.cli.main import main

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
HELMOPS = [sys.executable, "-m", "helmops.cli.main"]
_counter = iter(range(1, 100_000))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class Kube:
    def __init__(self, cp: Any, tools: Any, helm_home: Path) -> None:
        self.cp, self.tools = cp, tools
        self.kubeconfig = str(cp.kubeconfig)
        self.helm_env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
        self.helm_env.update(HELM_CACHE_HOME=str(helm_home / "c"), HELM_CONFIG_HOME=str(helm_home / "f"),
                             HELM_DATA_HOME=str(helm_home / "d"))  # fmt: skip

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(self.cp.kubectl(*args, input=input).stdout)

    def helm(self, *args: str) -> str:
        argv = [str(self.tools.helm), *args, "--kubeconfig", self.kubeconfig]
        return subprocess.run(argv, env=self.helm_env, capture_output=True, text=True, check=True).stdout

    def namespace(self) -> str:
        name = f"cli-{os.getpid() % 1000}-{next(_counter)}"
        self.kubectl("create", "namespace", name)
        return name

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, ns: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "helmapps.fleet.cattle.io", name, "-n", ns, "-o", "json")))

    def set_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.kubectl("patch", "helmapps.fleet.cattle.io", name, "-n", ns, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}))  # fmt: skip


def ready_status(
    version: str, generation: int, *, ready: bool = True, clusters: tuple[int, int] = (1, 1)
) -> dict[str, Any]:
    cond = {"type": "Ready", "status": "True" if ready else "False", "message": "" if ready else "deploying"}
    return {
        "version": version,
        "readyClusters": clusters[0],
        "desiredReadyClusters": clusters[1],
        "observedGeneration": generation,
        "conditions": [cond, {"type": "Accepted", "status": "True"}],
        "display": {"readyBundleDeployments": f"{clusters[0]}/{clusters[1]}", "state": "" if ready else "WaitApplied",
                    "message": "" if ready else "cluster local: deploying"},
    }  # fmt: skip


def helmapp_obj(name: str, ns: str, repo: str, version: str, **helm: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmApp",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"defaultNamespace": f"{ns}-rel", "helm": {"repo": repo, "chart": "hello", "version": version, **helm}},
    }


@pytest.fixture(scope="module")
def kube(management_cluster: Any, tools: Any, tmp_path_factory: pytest.TempPathFactory) -> Kube:
    k = Kube(management_cluster, tools, tmp_path_factory.mktemp("helm-home"))
    for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        k.kubectl("apply", "-f", str(crd))
    k.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io", "--timeout=60s")
    return k


@pytest.fixture(scope="module")
def tgz(charts: Any, chart_repo: Any) -> dict[str, Path]:
    out = {}
    for version in ("0.1.0", "0.2.0"):
        out[version] = charts.package("hello", version)
        chart_repo.publish(out[version])
    return out


# --- diff ----------------------------------------------------------------------------------------------------


@pytest.fixture
def installed(kube: Kube, tgz: dict[str, Path], chart_repo: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A release ``web`` of hello 0.1.0 (message: hello) in ``<ns>-rel``; yields (ns, manifest path)."""
    ns = kube.namespace()
    kube.helm("install", "web", str(tgz["0.1.0"]), "-n", f"{ns}-rel", "--create-namespace", "--set", "message=hello")
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(helmapp_obj("web", ns, chart_repo.url, "0.1.0", values={"message": "hello"})))
    yield ns, str(path)


def _edit(path: str, **helm: Any) -> None:
    obj = yaml.safe_load(Path(path).read_text())
    obj["spec"]["helm"].update(helm)
    Path(path).write_text(yaml.safe_dump(obj))


def test_diff_in_sync_exits_0(capsys: pytest.CaptureFixture[str], kube: Kube, installed: tuple[str, str]) -> None:
    ns, app = installed
    code, out, err = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig)
    assert code == 0, out + err
    assert f"=== cluster {ns}/local (target default): release {ns}-rel/web (deployed, revision 1)" in out
    assert "no differences" in out and "\x1b[" not in out
    code, out, _ = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig, "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["differences"] is False
    (c,) = report["clusters"]
    assert c["version"] == {"desired": "0.1.0", "deployed": "0.1.0", "changed": False}
    assert c["installed"] is True and c["status"] == "deployed" and c["revision"] == 1


def test_diff_values_and_version_changes_exit_2(
    capsys: pytest.CaptureFixture[str], kube: Kube, installed: tuple[str, str]
) -> None:
    _, app = installed
    _edit(app, version="0.2.0", values={"message": "bye", "extra": {"on": True}})
    code, out, err = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig)
    assert code == 2, out + err
    assert "version: 0.1.0 -> 0.2.0" in out
    assert '  ~ message: "hello" -> "bye"' in out and "  + extra.on: true" in out
    assert "-  message: hello" in out and "+  message: bye" in out
    code, out, _ = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig, "-o", "json", "--color", "always")
    (c,) = json.loads(out)["clusters"]
    assert code == 2 and c["different"] and c["version"]["changed"]
    assert {"path": "message", "op": "~", "from": "hello", "to": "bye"} in c["values"]["changes"]
    assert c["manifest"]["changed"] and "chartVersion" in c["manifest"]["diff"]
    code, out, _ = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig, "--color", "always")
    assert code == 2 and "\x1b[32m" in out


def test_diff_not_installed_and_secret_values_redacted(
    capsys: pytest.CaptureFixture[str], kube: Kube, installed: tuple[str, str]
) -> None:
    ns, app = installed
    rel_ns = f"{ns}-rel"
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vals", "namespace": rel_ns},
                "stringData": {"values.yaml": "password: s3cret-from-secret\n"}})  # fmt: skip
    _edit(app, valuesFrom=[{"secretKeyRef": {"name": "vals"}}])
    code, out, err = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig, "-o", "json")
    (c,) = json.loads(out)["clusters"]
    assert code == 2, err
    assert c["values"]["changes"] == [{"path": "password", "op": "+", "to": "***"}]
    assert "s3cret-from-secret" not in out + err
    other = Path(app).with_name("other.yaml")
    obj = yaml.safe_load(Path(app).read_text())
    obj["metadata"]["name"] = "other"
    other.write_text(yaml.safe_dump(obj))
    code, out, err = run(capsys, "diff", "-f", str(other), "--kubeconfig", kube.kubeconfig)
    assert code == 2, err
    assert "(not installed)" in out and "+kind: ConfigMap" in out and "s3cret-from-secret" not in out


def test_diff_errors_exit_1(
    capsys: pytest.CaptureFixture[str], kube: Kube, installed: tuple[str, str], tmp_path: Path
) -> None:
    _, app = installed
    _edit(app, version="9.9.9")
    code, out, err = run(capsys, "diff", "-f", app, "--kubeconfig", kube.kubeconfig)
    assert code == 1
    assert "error: cluster local in namespace" in out and "9.9.9" in err
    _edit(app, version="0.1.0")
    bogus = tmp_path / "bogus.kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
        "current-context": "x",
    }
    bogus.write_text(yaml.safe_dump(config))
    code, out, err = run(capsys, "diff", "-f", app, "--kubeconfig", str(bogus))
    assert code == 1 and "helmops diff:" in err


# --- status -------------------------------------------------------------------------------------------------


def test_status_table_json_one_and_missing(capsys: pytest.CaptureFixture[str], kube: Kube, chart_repo: Any) -> None:
    ns = kube.namespace()
    kube.apply(helmapp_obj("one", ns, chart_repo.url, "0.2.0"))
    kube.apply(helmapp_obj("two", ns, chart_repo.url, "^0.1"))
    kube.set_status(ns, "one", ready_status("0.2.0", kube.get(ns, "one")["metadata"]["generation"]))
    code, out, err = run(capsys, "status", "-n", ns, "--kubeconfig", kube.kubeconfig)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CHART", "VERSION", "CLUSTERS-READY", "STATE", "MESSAGE"]
    assert lines[1].split() == ["one", "hello", "0.2.0", "1/1", "Ready"]
    assert lines[2].split() == ["two", "hello", "-", "0/0", "Pending"]
    code, out, _ = run(capsys, "status", "-A", "--kubeconfig", kube.kubeconfig, "-o", "json")
    items = {(i["namespace"], i["name"]): i for i in json.loads(out)["items"]}
    assert code == 0 and items[(ns, "one")]["version"] == "0.2.0" and items[(ns, "two")]["specVersion"] == "^0.1"
    code, out, _ = run(capsys, "status", f"{ns}/one", "--kubeconfig", kube.kubeconfig, "-o", "yaml")
    one = yaml.safe_load(out)
    assert (
        code == 0
        and one["state"] == "Ready"
        and one["clusters"] == [{"cluster": f"{ns}/local", "resources": "", "state": "Ready", "message": ""}]
    )
    code, out, _ = run(capsys, "status", f"{ns}/one", "--kubeconfig", kube.kubeconfig)
    assert "CLUSTER" in out and f"{ns}/local" in out and "CONDITION" in out
    code, _, err = run(capsys, "status", f"{ns}/missing", "--kubeconfig", kube.kubeconfig)
    assert code == 1 and f"HelmApp {ns}/missing: not found" in err


def test_status_watch_prints_changes(kube: Kube, chart_repo: Any) -> None:
    ns = kube.namespace()
    kube.apply(helmapp_obj("w", ns, chart_repo.url, "0.1.0"))
    argv = [*HELMOPS, "status", "-n", ns, "--watch", "--watch-timeout", "30", "--kubeconfig", kube.kubeconfig]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout is not None
    header = proc.stdout.readline()  # the first table is printed once the list is done: later changes are events
    assert header.split()[0] == "NAME"
    status = ready_status("0.1.0", kube.get(ns, "w")["metadata"]["generation"], ready=False)
    kube.set_status(ns, "w", status)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert f"--- modified {ns}/w" in out
    assert "WaitApplied" in out and "cluster local: deploying" in out


# --- promote ------------------------------------------------------------------------------------------------


def test_promote_copies_a_ready_version_and_refuses_a_not_ready_source(
    capsys: pytest.CaptureFixture[str], kube: Kube, chart_repo: Any
) -> None:
    ns = kube.namespace()
    kube.apply(helmapp_obj("staging", ns, chart_repo.url, "^0.2"))
    kube.apply(helmapp_obj("prod", ns, chart_repo.url, "0.1.0"))
    kube.set_status(ns, "staging", ready_status("0.2.0", kube.get(ns, "staging")["metadata"]["generation"]))
    args = ["promote", "--from", f"{ns}/staging", "--to", f"{ns}/prod", "--kubeconfig", kube.kubeconfig]
    code, out, err = run(capsys, *args, "--dry-run")
    assert (
        code == 0
        and "would change 0.1.0 -> 0.2.0" in out
        and kube.get(ns, "prod")["spec"]["helm"]["version"] == "0.1.0"
    )
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert out == f"{ns}/prod: spec.helm.version changed 0.1.0 -> 0.2.0 (from {ns}/staging)\n"
    assert kube.get(ns, "prod")["spec"]["helm"]["version"] == "0.2.0"
    code, out, _ = run(capsys, *args, "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == {"from": f"{ns}/staging", "to": f"{ns}/prod", "version": "0.2.0",
                                             "previous": "0.2.0", "changed": False}  # fmt: skip

    gen = kube.get(ns, "staging")["metadata"]["generation"]
    kube.set_status(ns, "staging", ready_status("0.3.0", gen, ready=False, clusters=(1, 2)))
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert "refusing to promote" in err and "Ready is False: deploying" in err and "1/2 clusters ready" in err
    assert kube.get(ns, "prod")["spec"]["helm"]["version"] == "0.2.0"
    code, _, err = run(capsys, "promote", "--from", f"{ns}/nope", "--to", f"{ns}/prod", "--kubeconfig", kube.kubeconfig)
    assert code == 1 and f"HelmApp {ns}/nope: not found" in err


def test_promote_wait_until_target_ready_and_timeout(kube: Kube, chart_repo: Any) -> None:
    ns = kube.namespace()
    kube.apply(helmapp_obj("src", ns, chart_repo.url, "0.2.0"))
    kube.apply(helmapp_obj("dst", ns, chart_repo.url, "0.1.0"))
    kube.set_status(ns, "src", ready_status("0.2.0", kube.get(ns, "src")["metadata"]["generation"]))
    argv = [*HELMOPS, "promote", "--from", f"{ns}/src", "--to", f"{ns}/dst", "--wait", "--timeout", "120",
            "--kubeconfig", kube.kubeconfig]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while kube.get(ns, "dst")["spec"]["helm"]["version"] != "0.2.0":
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    generation = kube.get(ns, "dst")["metadata"]["generation"]
    kube.set_status(ns, "dst", ready_status("0.1.0", generation))  # still the old version: keeps waiting
    kube.set_status(ns, "dst", ready_status("0.2.0", generation))
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == f"{ns}/dst: Ready at 0.2.0 on every cluster"
    assert err == ""  # not a TTY: no progress output

    kube.apply(helmapp_obj("dst2", ns, chart_repo.url, "0.1.0"))
    argv = [*HELMOPS, "promote", "--from", f"{ns}/src", "--to", f"{ns}/dst2", "--wait", "--timeout", "2",
            "--kubeconfig", kube.kubeconfig]  # fmt: skip
    timed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=90)
    assert timed.returncode == 1
    assert "timed out after 2s waiting for" in timed.stderr and "status.version is empty" in timed.stderr


def test_diff_compares_the_controllers_fingerprint_label(
    capsys: pytest.CaptureFixture[str], kube: Kube, tgz: dict[str, Path], chart_repo: Any, tmp_path: Path
) -> None:
    ns = kube.namespace()
    app = tmp_path / "fp.yaml"
    app.write_text(yaml.safe_dump(helmapp_obj("fp", ns, chart_repo.url, "0.1.0", values={"message": "m"})))
    code, out, _ = run(capsys, "render", "-f", str(app), "-o", "json")
    fingerprint = json.loads(out)["clusters"][0]["fingerprint"]
    kube.helm("install", "fp", str(tgz["0.1.0"]), "-n", f"{ns}-rel", "--create-namespace", "--set", "message=m",
              "--labels", f"helmops.cattle.io/fingerprint={fingerprint}")  # fmt: skip
    code, out, err = run(capsys, "diff", "-f", str(app), "--kubeconfig", kube.kubeconfig, "-o", "json")
    (c,) = json.loads(out)["clusters"]
    assert code == 0, err
    assert c["fingerprint"] == {"desired": fingerprint, "deployed": fingerprint, "changed": False}
    _edit(str(app), timeoutSeconds=45)  # same chart, values and manifests; only a helm option differs
    code, out, err = run(capsys, "diff", "-f", str(app), "--kubeconfig", kube.kubeconfig)
    assert code == 2, err
    assert "helm options changed (release fingerprint differs): an upgrade would run" in out


def test_diff_reaches_a_downstream_cluster_through_its_kubeconfig_secret(
    capsys: pytest.CaptureFixture[str],
    kube: Kube,
    downstream_cluster: Any,
    tgz: dict[str, Path],
    chart_repo: Any,
    tools: Any,
    tmp_path: Path,
) -> None:
    ns = kube.namespace()
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ds-kubeconfig", "namespace": ns},
                "stringData": {"value": Path(downstream_cluster.kubeconfig).read_text()}})  # fmt: skip
    down = Kube(downstream_cluster, tools, tmp_path / "helm-down")
    down.kubectl("create", "namespace", f"{ns}-rel")
    down.helm("install", "web", str(tgz["0.1.0"]), "-n", f"{ns}-rel", "--set", "message=down")
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(yaml.safe_dump_all([
        {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster",
         "metadata": {"name": "ds", "namespace": ns, "labels": {"env": "prod"}},
         "spec": {"kubeConfigSecret": "ds-kubeconfig"}},
        {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster",
         "metadata": {"name": "nosecret", "namespace": ns, "labels": {"env": "prod"}}},
    ]))  # fmt: skip
    obj = helmapp_obj("web", ns, chart_repo.url, "0.1.0", values={"message": "${ .ClusterName }"})
    obj["spec"]["targets"] = [{"name": "prod", "clusterSelector": {"matchLabels": {"env": "prod"}}}]
    app = tmp_path / "down.yaml"
    app.write_text(yaml.safe_dump(obj))
    code, out, err = run(capsys, "diff", "-f", str(app), "--kubeconfig", kube.kubeconfig,
                         "--clusters-from", str(clusters), "-o", "json")  # fmt: skip
    report = {c["cluster"]: c for c in json.loads(out)["clusters"]}
    assert code == 1 and "no kubeConfigSecret" in err  # one cluster cannot be reached
    assert report[f"{ns}/nosecret"]["error"] == f"cluster nosecret in namespace {ns}: no kubeConfigSecret to reach it"
    ds = report[f"{ns}/ds"]
    assert ds["installed"] is True and ds["version"]["changed"] is False
    assert ds["values"]["changes"] == [{"path": "message", "op": "~", "from": "down", "to": "ds"}]


def test_diff_refuses_a_release_of_another_helmapp(
    capsys: pytest.CaptureFixture[str], kube: Kube, tgz: dict[str, Path], chart_repo: Any, tmp_path: Path
) -> None:
    ns = kube.namespace()
    kube.helm("install", "taken", str(tgz["0.1.0"]), "-n", f"{ns}-rel", "--create-namespace",
              "--labels", "helmops.cattle.io/helmapp=someone.else")  # fmt: skip
    app = tmp_path / "taken.yaml"
    app.write_text(yaml.safe_dump(helmapp_obj("taken", ns, chart_repo.url, "0.1.0")))
    code, out, err = run(capsys, "diff", "-f", str(app), "--kubeconfig", kube.kubeconfig)
    assert code == 1 and "error: cluster local" in out
    assert f"release {ns}-rel/taken belongs to another HelmApp (helmops.cattle.io/helmapp=someone.else)" in err
