"""The real components a benchmark runs against, and the controller under test as a measured subprocess.

Everything listens on 127.0.0.1 and is started here (through :mod:`support`, in tests/support); every wait has a
deadline, so a benchmark always ends on its own.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support import proc
from support.chartrepo import ChartRepo
from support.charts import ChartFactory, helm_env
from support.controlplane import ControlPlane
from support.registry import Registry
from support.tools import REPO_ROOT, Tools

from . import report

API = "/apis/fleet.cattle.io/v1alpha1"
#: the controller's per-reconcile log line (text format), counted instead of scraping /metrics.
RECONCILE_LINE = b" helmops.controller: reconcile "
CHART = "hello"


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- versions and machine ---------------------------------------------------------------------------------
def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def versions(tools: Tools, src_rev: str | None = None) -> dict[str, str]:
    """Tool versions; helmops as package version plus the commit the controller ran from (``-dirty``: the
    working tree, uncommitted edits included)."""
    try:
        own = importlib.metadata.version("helmops")
    except importlib.metadata.PackageNotFoundError:
        own = "unknown"
    rev = src_rev or _first_line(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
    return {
        "helm": _first_line([str(tools.helm), "version", "--short"]),
        "kube-apiserver": _first_line([str(tools.kube_apiserver), "--version"]).replace("Kubernetes ", ""),
        "python": platform.python_version(),
        "helmops": f"{own} ({rev})",
    }


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- process figures --------------------------------------------------------------------------------------
def cpu_of(pid: int) -> tuple[float, float]:
    """(own CPU seconds, reaped children's CPU seconds) of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return report.cpu_seconds_from_stat(stat, os.sysconf("SC_CLK_TCK"))


def memory_kb(pid: int, field_name: str) -> int | None:
    try:
        return report.status_kb(Path(f"/proc/{pid}/status").read_text(), field_name)
    except OSError:
        return None


# --- the kube API, read directly (cheaper than a kubectl per poll) ----------------------------------------
@dataclass
class Api:
    cp: ControlPlane

    def _ctx(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cp.ca_file))

    def get(self, path: str, timeout: float = 30) -> Any:
        req = urllib.request.Request(self.cp.server + path, headers={"Authorization": f"Bearer {self.cp.token}"})
        with urllib.request.urlopen(req, context=self._ctx(), timeout=timeout) as resp:
            return json.loads(resp.read())

    def text(self, path: str, timeout: float = 30) -> str:
        req = urllib.request.Request(self.cp.server + path, headers={"Authorization": f"Bearer {self.cp.token}"})
        with urllib.request.urlopen(req, context=self._ctx(), timeout=timeout) as resp:
            return str(resp.read().decode())

    def helmapps(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(f"{API}/namespaces/{namespace}/helmapps")["items"]
        return items

    def count_release_secrets(self, namespace: str) -> int:
        out = self.get(f"/api/v1/namespaces/{namespace}/secrets?labelSelector=owner%3Dhelm&limit=5000")
        return len(out["items"])


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def is_ready(obj: Mapping[str, Any], version: str | None = None) -> bool:
    if condition(obj, "Ready").get("status") != "True":
        return False
    return version is None or (obj.get("status") or {}).get("version") == version


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.5,
               progress: Callable[[], str] | None = None) -> float:
    """Polls ``check`` until true; returns when (monotonic). Raises TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + 15
    while True:
        try:
            if check():
                return time.monotonic()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f}s" + (f" ({progress()})" if progress else ""))
        if progress and now > next_note:
            say(f"waiting for {what}: {progress()}")
            next_note = now + 15
        time.sleep(interval)


def wait_ready(api: Api, namespace: str, n: int, timeout: float, version: str | None = None,
               interval: float = 0.5) -> float:
    """Waits until ``n`` HelmApps in ``namespace`` are Ready (at ``version`` if given); returns when."""
    seen = {"ready": 0, "total": 0}

    def check() -> bool:
        items = api.helmapps(namespace)
        seen["total"] = len(items)
        seen["ready"] = sum(is_ready(i, version) for i in items)
        return seen["total"] >= n and seen["ready"] >= n

    return wait_until(f"{n} HelmApps Ready in {namespace}", check, timeout, interval,
                      progress=lambda: f"{seen['ready']}/{n} Ready")


# --- manifests --------------------------------------------------------------------------------------------
def oci_helmapps(namespace: str, n: int, repo: str, version: str, release_namespace: str, *,
                 secret: str = "bench-registry", prefix: str = "app", polling_interval: str | None = None,
                 extra_spec: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n`` HelmApps of the same OCI chart, each its own release, in one release namespace."""
    docs: list[dict[str, Any]] = []
    for i in range(n):
        spec: dict[str, Any] = {
            "helmSecretName": secret,
            "helm": {"repo": repo, "version": version, "releaseName": f"{prefix}-{i:04d}",
                     "values": {"message": f"bench {i}"}},
            "defaultNamespace": release_namespace,
        }
        if polling_interval:
            spec["pollingInterval"] = polling_interval
        spec.update(extra_spec or {})
        docs.append({"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp",
                     "metadata": {"name": f"{prefix}-{i:04d}", "namespace": namespace}, "spec": spec})
    return docs


def plain_http_secret(namespace: str, name: str = "bench-registry") -> dict[str, Any]:
    """Fleet's ``basicHTTP`` opt-in for the loopback registry (it speaks plain HTTP)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": {"basicHTTP": "true"}}


def namespace_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def multi_doc(docs: Sequence[Mapping[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(dict(d), sort_keys=False) for d in docs)


# --- the stack ---------------------------------------------------------------------------------------------
@dataclass
class Stack:
    """A control plane with the CRDs, a registry (and optionally an HTTP repo), and packaged test charts."""

    tools: Tools
    workdir: Path
    with_repo: bool = False
    cp: ControlPlane | None = None
    registry: Registry | None = None
    repo: ChartRepo | None = None
    charts: ChartFactory | None = None
    extra_planes: list[ControlPlane] = field(default_factory=list)
    controller_src: Path = REPO_ROOT
    controller_env: Mapping[str, str] = field(default_factory=dict)
    #: when set, every controller runs under cProfile and writes ``<dir>/<controller name>.prof`` on exit.
    profile_dir: Path | None = None

    @property
    def api(self) -> Api:
        assert self.cp is not None
        return Api(self.cp)

    def start(self) -> Stack:
        say("starting a control plane, an OCI registry" + (" and an HTTP chart repo" if self.with_repo else ""))
        self.cp = ControlPlane(self.tools, name="bench", workdir=self.workdir / "cluster").start()
        self.registry = Registry(self.tools, workdir=self.workdir / "registry").start()
        if self.with_repo:
            self.repo = ChartRepo(self.tools, workdir=self.workdir / "chartrepo").start()
        self.charts = ChartFactory(self.tools, out_dir=self.workdir / "charts")
        for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
            self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        cp = self.cp
        # kubectl wait fails at once (not after its timeout) while discovery does not list the CRD yet.
        proc.wait_until(lambda: cp.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io",
                                           "--timeout=10s", check=False).returncode == 0,
                        what="HelmApp CRD established", timeout=90, interval=1)
        return self

    def controller(self, name: str, namespaces: Sequence[str], env: Mapping[str, str],
                   helm: Path | None = None) -> Controller:
        """A (not yet started) ``helmops run`` against this stack's control plane."""
        assert self.cp is not None
        # one chart cache per stack, shared by its controllers (a restart reuses it, as a volume would),
        # never the developer's ~/.cache/helmops
        cache = {"HELMOPS_CHART_CACHE_DIR": str(self.workdir / "chart-cache")}
        return Controller(self.cp.kubeconfig, helm or self.tools.helm, self.workdir, namespaces,
                          env={**cache, **env, **self.controller_env}, name=name, src=self.controller_src,
                          profile=self.profile_dir / f"{name}.prof" if self.profile_dir else None)

    def add_plane(self, name: str) -> ControlPlane:
        plane = ControlPlane(self.tools, name=name, workdir=self.workdir / name).start()
        self.extra_planes.append(plane)
        return plane

    def publish_oci(self, version: str) -> tuple[Path, str]:
        """Packages ``hello`` at ``version`` and pushes it; returns the .tgz and the ``oci://`` chart ref."""
        assert self.charts is not None and self.registry is not None
        tgz = self.charts.package(CHART, version)
        base = self.charts.push_oci(tgz, self.registry)
        return tgz, f"{base}/{CHART}"

    def layer_digest(self, version: str) -> str | None:
        """The chart layer's digest in the registry, to tell chart downloads apart in its access log."""
        assert self.registry is not None
        req = urllib.request.Request(f"{self.registry.url}/v2/charts/{CHART}/manifests/{version}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                manifest = json.loads(resp.read())
        except (OSError, ValueError):
            return None
        for layer in manifest.get("layers") or []:
            if "helm.chart.content" in str(layer.get("mediaType")):
                return str(layer.get("digest"))
        return None

    def apply(self, docs: Sequence[Mapping[str, Any]], name: str) -> float:
        """One ``kubectl apply --server-side`` of a multi-document file; returns the seconds it took."""
        assert self.cp is not None
        path = self.workdir / f"{name}.yaml"
        path.write_text(multi_doc(docs))
        start = time.monotonic()
        self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), timeout=900)
        return time.monotonic() - start

    def stop(self) -> None:
        for plane in self.extra_planes:
            plane.stop()
        for part in (self.repo, self.registry, self.cp):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()


@contextlib.contextmanager
def stack(tools: Tools, name: str, with_repo: bool = False, src: Path | None = None,
          controller_env: Mapping[str, str] | None = None, profile_dir: Path | None = None) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix=f"helmops-bench-{name}-"))
    s = Stack(tools, workdir, with_repo=with_repo, controller_src=src or REPO_ROOT,
              controller_env=dict(controller_env or {}), profile_dir=profile_dir)
    try:
        yield s.start()
    finally:
        s.stop()
        if not os.environ.get("HELMOPS_KEEP_BENCH_DIRS"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir}")


def kubeconfig_secret(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """A Fleet-style kubeconfig Secret (key ``value``) for a downstream cluster."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {"value": base64.b64encode(plane.kubeconfig.read_bytes()).decode()}}


def snapshot(rev: str, dest: Path) -> str:
    """``git archive`` of ``helmops/`` at ``rev`` into ``dest`` (so edits in progress in the working tree do
    not change the controller under test); returns the resolved commit."""
    sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", f"{rev}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", sha, "helmops"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return sha


# --- helm, directly --------------------------------------------------------------------------------------
def write_helm_wrapper(path: Path, helm: Path, log: Path) -> Path:
    """A helm that logs its argv (one line per call) and then execs the real one."""
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{helm}" "$@"\n')
    path.chmod(0o755)
    return path


def helm_baseline(tools: Tools, workdir: Path, kubeconfig: Path, tgz: Path, names: Sequence[str],
                  namespace: str, concurrency: int, timeout: float) -> tuple[float, float, int]:
    """The physical limit for this design: the same installs by ``xargs -P W helm upgrade --install``.

    Returns (wall seconds, CPU seconds of xargs and its helm children, 0 if every helm call succeeded else 1).
    """
    env = helm_env(workdir / "helm-baseline")
    argv = ["xargs", "-P", str(concurrency), "-I{}", str(tools.helm), "upgrade", "--install", "{}", str(tgz),
            "--namespace", namespace, "--create-namespace", "--kubeconfig", str(kubeconfig),
            "--reset-values", "--history-max", "2", "--set", "message=bench"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    out = subprocess.run(argv, input="\n".join(names) + "\n", env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if out.returncode != 0:
        say(f"baseline: xargs exited {out.returncode}: {out.stderr.strip()[-800:]}")
    return seconds, cpu, 0 if out.returncode == 0 else 1


# --- the controller under test --------------------------------------------------------------------------
@dataclass
class Controller:
    """``helmops run`` as a subprocess, with its CPU and memory read from /proc and its metrics scraped."""

    kubeconfig: Path
    helm: Path
    workdir: Path
    namespaces: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = "controller"
    #: the source tree ``helmops`` is imported from (a ``git archive`` snapshot with ``--src``).
    src: Path = REPO_ROOT
    #: run under cProfile, written here when the controller exits (SIGTERM is a clean exit).
    profile: Path | None = None
    metrics_port: int = 0
    health_port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _log_pos: int = 0
    _log_count: int = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, timeout: float = 120) -> Controller:
        self.metrics_port = self.metrics_port or proc.free_port()
        self.health_port = self.health_port or proc.free_port()
        env = {k: v for k, v in os.environ.items() if k != "EXPERIMENTAL_HELM_OPS"}
        env.update({"HELMOPS_HELM": str(self.helm), "PYTHONUNBUFFERED": "1",
                    "HELMOPS_METRICS_BIND_ADDRESS": f"127.0.0.1:{self.metrics_port}"})
        if self.src != REPO_ROOT:
            env["PYTHONPATH"] = str(self.src)
        env.update(self.env)
        if self.profile:
            self.profile.parent.mkdir(parents=True, exist_ok=True)
        prof = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        argv: list[str] = [sys.executable, *prof, "-m", "helmops.cli.main", "run", "--enable-helmops",
                           "--kubeconfig", str(self.kubeconfig), "--health-port", str(self.health_port)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        self.started_at = time.monotonic()
        self.popen = proc.start(argv, self.log, env=env, cwd=self.src)
        proc.wait_until(lambda: bool(self.metrics_text()), what=f"helmops ({self.name}) metrics", timeout=timeout,
                        proc=self.popen, log_path=self.log)
        # /healthz comes from kopf once the operator runs (its start-up — imports, clients — is done): what a
        # scenario measures after this is the controller at work, not its start
        proc.wait_until(self.healthy, what=f"helmops ({self.name}) /healthz", timeout=timeout,
                        proc=self.popen, log_path=self.log)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return report.parse_metrics(self.metrics_text())

    def reconciles(self) -> int:
        return int(report.metric_sum(self.metrics(), "helmops_reconcile_total"))

    def helm_actions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for labels, value in self.metrics().get("helmops_helm_actions_total", []):
            if value:
                out[f"{labels.get('action')}/{labels.get('result')}"] = int(value)
        return out

    def reconcile_lines(self) -> int:
        """Reconciles so far, counted from the controller's log lines ("reconcile <ns>/<name>: release ...",
        one per HelmApp and cluster), read incrementally. Unlike scraping /metrics — whose per-HelmApp
        series cost the controller tens of milliseconds per scrape at a few hundred HelmApps — this costs
        the measured process nothing."""
        with open(self.log, "rb") as f:
            f.seek(self._log_pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self._log_count += data[:cut].count(RECONCILE_LINE)
        self._log_pos += cut
        return self._log_count

    def cpu(self) -> tuple[float, float]:
        return cpu_of(self.pid)

    def hwm_mb(self) -> float | None:
        kb = memory_kb(self.pid, "VmHWM")
        return round(kb / 1024, 1) if kb is not None else None

    def rss_mb(self) -> float | None:
        kb = memory_kb(self.pid, "VmRSS")
        return round(kb / 1024, 1) if kb is not None else None

    def stop(self) -> None:
        proc.stop(self.popen, timeout=30)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def controller_env(workers: int, helm_concurrency: int, **extra: str) -> dict[str, str]:
    """The controller's concurrency for a scenario. Every scenario puts its HelmApps in one namespace, and by
    default one namespace gets one helm slot less than all (``HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE``: the
    other tenants' guaranteed slot); the peers (``xargs -P W``, Flux's ``--concurrent W``) have no such cap,
    so the controller is given all W slots for that namespace too."""
    env = {
        "HELMOPS_RECONCILER_WORKERS": str(workers),
        "HELMOPS_HELM_CONCURRENCY": str(helm_concurrency),
        "HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE": str(helm_concurrency),
    }
    env.update(extra)
    return env
