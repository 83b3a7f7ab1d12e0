"""Helpers and module fixtures shared by the integration modules that run ``helmops run`` as a subprocess.

A plain module, not a conftest: a test module opts in by importing the fixtures it wants by name, so each
module keeps its own module-scoped controller, helm wrapper and workdir. helm invocations are counted through
a wrapper (``HELMOPS_HELM``) that appends each argv to a log, then execs the real helm. Waits poll generously.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import ControlPlane
from support.proc import die_with_parent
from support.tools import reference_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
FLEET_CRD = reference_dir() / "fleet-v0.12.0-helmapp-crd.yaml"
FINALIZER = "fleet.cattle.io/helmapp-finalizer"


# --- helpers ---------------------------------------------------------------------------------------------
def wait_for(what: str, check: Callable[[], Any], timeout: float = 90, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, KeyError, IndexError, TypeError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, cp: Any) -> None:
        self.cp = cp

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return str(self.cp.kubectl(*args, input=input, check=check).stdout)

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        out = self.cp.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def helmapp(self, name: str, ns: str) -> dict[str, Any] | None:
        return self.get("helmapps.fleet.cattle.io", name, ns)

    def condition(self, name: str, ns: str, ctype: str) -> dict[str, Any]:
        obj = self.helmapp(name, ns) or {}
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype:
                return dict(c)
        return {}

    def release_secrets(self, release: str, ns: str) -> list[dict[str, str]]:
        out = self.kubectl("get", "secrets", "-n", ns, "-l", f"owner=helm,name={release}", "-o", "json")
        items = json.loads(out)["items"]
        return sorted((i["metadata"]["labels"] for i in items), key=lambda lab: int(lab["version"]))

    def release_status(self, release: str, ns: str) -> str | None:
        secrets = self.release_secrets(release, ns)
        return secrets[-1]["status"] if secrets else None

    def configmap(self, name: str, ns: str) -> dict[str, str] | None:
        cm = self.get("configmap", name, ns)
        return dict(cm.get("data") or {}) if cm else None

    def events(self, name: str, ns: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return list(json.loads(out)["items"])

    def event_reasons(self, name: str, ns: str) -> list[str]:
        return [e["reason"] for e in self.events(name, ns)]

    def ensure_namespace(self, ns: str) -> None:
        self.cp.kubectl("create", "namespace", ns, check=False)


def fleet_crds(cluster: Cluster, timeout: float = 120) -> Cluster:
    """Applies the repo's CRDs (HelmApp, Cluster, ClusterGroup) and waits until all three are established."""
    for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        cluster.kubectl("apply", "-f", str(crd))

    def established() -> bool:
        for name in ("helmapps", "clusters", "clustergroups"):
            obj = cluster.get("crd", f"{name}.fleet.cattle.io", "") or {}
            conds = (obj.get("status") or {}).get("conditions") or []
            if not any(x.get("type") == "Established" and x.get("status") == "True" for x in conds):
                return False
        return True

    wait_for("Fleet CRDs established", established, timeout)
    return cluster


def register_cluster(mgmt: Cluster, ns: str, name: str, cp: ControlPlane, labels: dict[str, str] | None = None) -> None:
    """A Fleet Cluster ``name`` in ``ns`` reaching ``cp`` through its own kubeconfig Secret ``kc-<name>``
    (key ``value``)."""
    mgmt.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"kc-{name}", "namespace": ns},
            "stringData": {"value": yaml.safe_dump(cp.kubeconfig_dict())},
        }
    )
    mgmt.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
            "spec": {"kubeConfigSecret": f"kc-{name}"},
        }
    )


class Controller:
    """One ``helmops run`` subprocess."""

    def __init__(
        self,
        cluster: Any,
        helm: Path,
        workdir: Path,
        *,
        namespaces: tuple[str, ...],
        enabled: bool = True,
        log_format: str = "text",
        **env: str,
    ) -> None:
        self.cluster, self.helm, self.workdir = cluster, helm, workdir
        self.enabled, self.namespaces, self.log_format = enabled, namespaces, log_format
        self.env = env
        self.log = workdir / f"controller-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port, self.metrics_port = free_port(), free_port()
        self.start_args: list[str] = []

    def http(self, port: int, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), resp.read().decode()

    def start(self) -> Controller:
        env = {k: v for k, v in os.environ.items() if k != "EXPERIMENTAL_HELM_OPS"}
        env.update(
            HELMOPS_HELM=str(self.helm),
            HELMOPS_PENDING_GRACE_SECONDS="2",
            HELMOPS_BACKOFF_BASE_SECONDS="1",
            HELMOPS_BACKOFF_CAP_SECONDS="5",
            HELMOPS_HELM_TERM_GRACE_SECONDS="20",
            HELMOPS_RECONCILER_WORKERS="4",
            PYTHONUNBUFFERED="1",
            # the chart cache persists (helmops.sources.cache): one per controller unless a test shares one
            # on purpose (env), never the user's ~/.cache
            HELMOPS_CHART_CACHE_DIR=str(self.log.with_suffix(".charts")),
        )
        env.update(self.env)
        argv = [
            sys.executable, "-m", "helmops.cli.main", "run",
            "--kubeconfig", str(self.cluster.kubeconfig),
            "--health-port", str(self.health_port),
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        for pattern in self.namespaces:
            argv += ["--namespace", pattern]
        argv += ["--log-format", self.log_format, *self.start_args]
        if self.enabled:
            argv.append("--enable-helmops")
        with open(self.log, "ab") as out:
            # dies with the test process even when pytest itself is killed (no orphaned controller)
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, preexec_fn=die_with_parent
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 90) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("controller did not exit on SIGTERM:\n" + self.text()[-4000:]) from None
        return int(self.proc.returncode)

    def count(self, needle: str) -> int:
        return self.text().count(needle)


def election_env(system: str, lease: str = "6s", renew: str = "4s") -> dict[str, str]:
    """Controller env for ``--leader-elect``: the Lease in ``system``, timings short enough for a test."""
    return {
        "NAMESPACE": system,
        "CATTLE_ELECTION_LEASE_DURATION": lease,
        "CATTLE_ELECTION_RENEW_DEADLINE": renew,
        "CATTLE_ELECTION_RETRY_PERIOD": "1s",
    }


def electing(cluster: Any, helm: Path, workdir: Path, pattern: str, env: dict[str, str]) -> Controller:
    """A ``--leader-elect`` controller (not started yet) watching ``pattern``."""
    ctl = Controller(cluster, helm, workdir, namespaces=(pattern,), **env)
    ctl.start_args = ["--leader-elect"]
    return ctl


def stop_running(*ctls: Controller | None) -> None:
    """Stop whichever of ``ctls`` were started and still run; each must exit 0."""
    for c in ctls:
        if c is not None and c.proc is not None and c.proc.poll() is None:
            assert c.stop() == 0


@contextlib.contextmanager
def own_control_plane(tools: Any, name: str) -> Iterator[ControlPlane]:
    """A control plane of the module's own (one it may stop or break), with the repo's CRDs established."""
    cp = ControlPlane(tools, name=name).start()
    try:
        for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
            cp.kubectl("apply", "-f", str(crd))
        cp.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io", "--timeout=60s")
        yield cp
    finally:
        cp.stop()


class HelmLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self, release: str | None = None, sub: str | None = None) -> list[list[str]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            argv = line.split()  # sub-command and release name never contain spaces
            if sub and (not argv or argv[0] != sub):
                continue
            if release and (len(argv) < 2 or argv[1] != release):
                continue
            out.append(argv)
        return out


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(management_cluster: Any) -> Cluster:
    c = Cluster(management_cluster)
    crds = sorted((REPO_ROOT / "crds").glob("*.yaml"))
    files = [p for p in crds if "helmapp" in p.name.lower()] or [FLEET_CRD]
    for f in files:
        c.kubectl("apply", "-f", str(f))

    def established() -> bool:
        crd = c.get("crd", "helmapps.fleet.cattle.io", "") or {}
        conds = (crd.get("status") or {}).get("conditions") or []
        return any(x.get("type") == "Established" and x.get("status") == "True" for x in conds)

    wait_for("HelmApp CRD established", established, 60)
    return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("controller")


@pytest.fixture(scope="module")
def helm_log(workdir: Path, tools: Any) -> tuple[Path, HelmLog]:
    log = workdir / "helm-calls.log"
    wrapper = workdir / "helm-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\nexec {shlex.quote(str(tools.helm))} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, HelmLog(log)


@pytest.fixture(scope="module")
def controller(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("app-*",)).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


@pytest.fixture(scope="module")
def published(charts: Any, chart_repo: Any) -> dict[str, Path]:
    out = {}
    for name, version in [
        ("hello", "0.1.0"),
        ("hello", "0.2.0"),
        ("failing", "0.1.0"),
        ("schema", "0.1.0"),
        ("slowhook", "0.1.0"),
    ]:
        tgz = charts.package(name, version)
        chart_repo.publish(tgz)
        out[f"{name}-{version}"] = tgz
    return out


_counter = iter(range(1, 10_000))


def make_ns(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{os.getpid() % 1000}-{next(_counter)}"
    cluster.ensure_namespace(name)
    return name


@pytest.fixture
def ns(cluster: Cluster) -> str:
    """A namespace the module's controller watches (``app-*``)."""
    return make_ns(cluster, "app")


def helmapp(
    name: str,
    ns: str,
    *,
    repo: str,
    chart: str,
    version: str = "",
    values: dict[str, Any] | None = None,
    target: str | None = None,
    **helm: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "defaultNamespace": target or f"{ns}-target",
        "helm": {"repo": repo, "chart": chart, "version": version, "values": values or {}, **helm},
    }
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmApp",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def merge_patch(cluster: Cluster, name: str, ns: str, patch: dict[str, Any]) -> None:
    cluster.kubectl("patch", "helmapps.fleet.cattle.io", name, "-n", ns, "--type", "merge", "-p", json.dumps(patch))


def wait_ready(cluster: Cluster, name: str, ns: str, timeout: float = 120) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = cluster.helmapp(name, ns) or {}
        st = obj.get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        gen_ok = st.get("observedGeneration", obj["metadata"]["generation"]) == obj["metadata"]["generation"]
        if conds.get("Ready", {}).get("status") == "True" and gen_ok:
            return obj
        return None

    return dict(wait_for(f"HelmApp {ns}/{name} Ready", ready, timeout))


def poke(cluster: Cluster, name: str, ns: str) -> None:
    """A metadata change: triggers a reconcile without changing the desired state."""
    cluster.kubectl("annotate", "--overwrite", "helmapps.fleet.cattle.io", name, "-n", ns, f"poke={time.time_ns()}")


def noop_count(ctl: Controller, name: str, ns: str) -> int:
    return sum(
        1
        for line in ctl.text().splitlines()
        if f"reconcile {ns}/{name}:" in line and "deployed-in-sync -> none" in line
    )


def _try_http(ctl: Controller, port: int, path: str) -> tuple[int, str] | None:
    try:
        return ctl.http(port, path)
    except (OSError, urllib.error.URLError):
        return None
