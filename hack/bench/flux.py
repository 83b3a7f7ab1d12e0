"""Flux's helm-controller and source-controller as the benchmark peer, run as plain processes.

The binaries are built once by ``hack/bench/flux-build.sh`` (idempotent; cached in ``~/.cache/helmops``, never
in the repo). Each run starts both controllers afresh, restricted to that run's namespace
(``RUNTIME_NAMESPACE`` + ``--watch-all-namespaces=false``), so objects of earlier runs cost them nothing.
No kubelet runs here, so every HelmRelease disables waiting (nothing would ever become available).
"""

from __future__ import annotations

import functools
import os
import subprocess
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import support.proc as sproc
from support.tools import REPO_ROOT, cache_dir

from . import report
from .procs import cpu_seconds

HELM_CONTROLLER_VERSION = os.environ.get("FLUX_HELM_CONTROLLER_VERSION", "v1.4.3")
SOURCE_CONTROLLER_VERSION = os.environ.get("FLUX_SOURCE_CONTROLLER_VERSION", "v1.7.3")
HELM_API = "/apis/helm.toolkit.fluxcd.io/v2"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
BUILD_SCRIPT = REPO_ROOT / "hack" / "bench" / "flux-build.sh"
#: the two ways a HelmRelease names its chart (see docs/benchmarks.md)
MODES = ("chart", "chartref")


@dataclass(frozen=True)
class Binaries:
    helm_controller: Path
    source_controller: Path
    crds: Path

    def versions(self) -> dict[str, str]:
        return {"flux-helm-controller": HELM_CONTROLLER_VERSION, "flux-source-controller": SOURCE_CONTROLLER_VERSION}


def binaries_dir() -> Path:
    return cache_dir() / "bin" / f"flux-hc-{HELM_CONTROLLER_VERSION}-sc-{SOURCE_CONTROLLER_VERSION}"


def ensure_binaries() -> Binaries:
    """Builds the controllers unless cached (the script says so and returns at once when they are)."""
    out = binaries_dir()
    subprocess.run(
        ["nice", "-n", "10", "bash", str(BUILD_SCRIPT), str(out)],
        check=True,
        env={
            **os.environ,
            "FLUX_HELM_CONTROLLER_VERSION": HELM_CONTROLLER_VERSION,
            "FLUX_SOURCE_CONTROLLER_VERSION": SOURCE_CONTROLLER_VERSION,
            "HELMOPS_CACHE_DIR": str(cache_dir()),
        },
    )
    return Binaries(out / "helm-controller", out / "source-controller", out / "crds")


# --- manifests --------------------------------------------------------------------------------------------
def helm_repository(namespace: str, url: str, interval: str, name: str = "bench") -> dict[str, Any]:
    return {
        "apiVersion": SOURCE_API,
        "kind": "HelmRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": url, "interval": interval},
    }


def helm_chart(namespace: str, chart: str, version: str, interval: str, repo: str = "bench") -> dict[str, Any]:
    """The one shared HelmChart of ``chartref`` mode."""
    return {
        "apiVersion": SOURCE_API,
        "kind": "HelmChart",
        "metadata": {"name": chart, "namespace": namespace},
        "spec": {
            "chart": chart,
            "version": version,
            "interval": interval,
            "sourceRef": {"kind": "HelmRepository", "name": repo},
        },
    }


def helm_releases(
    namespace: str,
    n: int,
    release_namespace: str,
    mode: str,
    chart: str,
    version: str,
    interval: str,
    prefix: str = "app",
    repo: str = "bench",
) -> list[dict[str, Any]]:
    """``n`` HelmReleases of one chart; ``chart`` mode: each its own HelmChart (``spec.chart.spec``, what
    most users write); ``chartref`` mode: all point at one HelmChart (``spec.chartRef``)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    no_wait = {"disableWait": True, "disableWaitForJobs": True}
    docs = []
    for i in range(n):
        spec: dict[str, Any] = {
            "interval": interval,
            "releaseName": f"{prefix}-{i:04d}",
            "targetNamespace": release_namespace,
            "storageNamespace": release_namespace,
            "install": dict(no_wait),
            "upgrade": dict(no_wait),
            "values": {"message": f"bench {i}"},
        }
        if mode == "chart":
            spec["chart"] = {
                "spec": {
                    "chart": chart,
                    "version": version,
                    "interval": interval,
                    "sourceRef": {"kind": "HelmRepository", "name": repo},
                }
            }
        else:
            spec["chartRef"] = {"kind": "HelmChart", "name": chart, "namespace": namespace}
        docs.append(
            {
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "kind": "HelmRelease",
                "metadata": {"name": f"{prefix}-{i:04d}", "namespace": namespace},
                "spec": spec,
            }
        )
    return docs


def release_ready(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation, and the newest history entry deployed."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != (obj.get("metadata") or {}).get("generation"):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    history = status.get("history") or []
    return ready and bool(history) and history[0].get("status") == "deployed"


def reconcile_count(metrics: Mapping[str, list[tuple[dict[str, str], float]]], controller: str) -> int:
    """controller-runtime's ``controller_runtime_reconcile_total`` summed over results for one controller."""
    return int(
        sum(
            v
            for labels, v in metrics.get("controller_runtime_reconcile_total", [])
            if labels.get("controller", "").lower() == controller
        )
    )


# --- the processes ----------------------------------------------------------------------------------------
@dataclass
class Controllers:
    """Both controllers for one namespace. ``extra_args`` go to both (e.g. raised client rate limits)."""

    bins: Binaries
    kubeconfig: Path
    namespace: str
    workdir: Path
    concurrent: int = 4
    extra_args: Sequence[str] = ()
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)

    def start(self, timeout: float = 120) -> Controllers:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": self.namespace}
        storage = self.workdir / f"flux-storage-{self.namespace}"
        storage.mkdir(parents=True, exist_ok=True)
        sport = sproc.free_port()
        common = [
            "--enable-leader-election=false",
            "--watch-all-namespaces=false",
            f"--concurrent={self.concurrent}",
            "--log-level=info",
            *self.extra_args,
        ]
        for name, binary, own in (
            (
                "source-controller",
                self.bins.source_controller,
                [
                    f"--storage-path={storage}",
                    f"--storage-addr=127.0.0.1:{sport}",
                    f"--storage-adv-addr=127.0.0.1:{sport}",
                ],
            ),
            ("helm-controller", self.bins.helm_controller, []),
        ):
            metrics, health = sproc.free_port(), sproc.free_port()
            self.ports[name] = (metrics, health)
            argv = [
                str(binary),
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-addr=127.0.0.1:{health}",
                *common,
                *own,
            ]
            log = self.workdir / f"{name}-{self.namespace}.log"
            self.procs[name] = sproc.start(argv, log, env=env)
            popen = self.procs[name]
            sproc.wait_until(
                functools.partial(_ok, f"http://127.0.0.1:{health}/readyz"),
                what=f"flux {name}",
                timeout=timeout,
                proc=popen,
                log_path=log,
            )
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def hwm_mb(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, p in self.procs.items():
            try:
                kb = report.status_kb(Path(f"/proc/{p.pid}/status").read_text(), "VmHWM")
            except OSError:
                kb = None
            out[name] = round(kb / 1024, 1) if kb else None
        return out

    def helmrelease_reconciles(self) -> int:
        metrics_port = self.ports["helm-controller"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return reconcile_count(report.parse_metrics(text), "helmrelease")

    def stop(self) -> None:
        for p in self.procs.values():
            sproc.stop(p, timeout=15)


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bool(resp.status == 200)
