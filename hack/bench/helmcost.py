"""helm-cost: where the CPU of one ``helm upgrade --install`` goes, and what the controller can save around it.

Sequential helm calls (one at a time, so no call competes with another) against the bench control plane,
each variant ``--n`` times after one warm-up call; CPU per call from the reaped children's rusage, wall time
per call. Variants peel the install apart (process start; chart load and render without a cluster; kube client
and storage; the full install) and then vary only what the controller chooses: a fresh vs a stable kube cache
directory (discovery and OpenAPI HTTP cache), values on stdin vs in a file, and the opt-ins that change what
helm checks (``--disable-openapi-validation``, ``--skip-schema-validation``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from support.tools import Tools

from . import report
from .options import Options
from .stack import CHART, Stack, loadavg, namespace_doc, say

COLUMNS = ("variant", "calls", "cpu_ms_per_call", "wall_ms_per_call", "vs_install_default")
VALUES = {"message": "bench", "nested": {"list": [1, 2, 3], "flag": True}}


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def measure(run_one: Callable[[int], None], calls: int) -> dict[str, float]:
    """CPU and wall per call of ``calls`` sequential calls (after one warm-up call that is not counted)."""
    run_one(-1)
    cpu0, t0 = _children_cpu(), time.monotonic()
    for i in range(calls):
        run_one(i)
    return {
        "cpu_ms_per_call": round(1000 * (_children_cpu() - cpu0) / calls, 1),
        "wall_ms_per_call": round(1000 * (time.monotonic() - t0) / calls, 1),
    }


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.cp is not None and st.charts is not None
    calls = opts.largest
    tgz = st.charts.package(CHART, "1.0.0")
    ns = "helmcost"
    st.apply([namespace_doc(ns)], "helmcost-setup")
    base = Path(tempfile.mkdtemp(prefix="helmcost-", dir=st.workdir))
    stable_cache = base / "kube-cache-stable"
    values_file = base / "values.json"
    values_file.write_text(json.dumps(VALUES))
    counter = {"n": 0}

    def helm(args: Sequence[str], *, kube_cache: Path | None, stdin: str | None = None, cluster: bool = True) -> None:
        """One helm call with per-call helm homes, as the driver gives every call."""
        home = Path(tempfile.mkdtemp(prefix="call-", dir=base))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBE"))}
        env.update(
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
            HELM_DRIVER="secret",
            # a fresh cache dir per call is what a controller whose HOME is unwritable (or per-call) gets
            KUBECACHEDIR=str(kube_cache or home / "kube-cache"),
        )
        argv = [str(tools.helm), *args]
        if cluster:
            argv += ["--kubeconfig", str(st.cp.kubeconfig)]  # type: ignore[union-attr]
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)
        if out.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args[:2])} failed: {out.stderr.strip()[-400:]}")

    def install(extra: Sequence[str] = (), *, stable: bool, values: str = "stdin") -> Callable[[int], None]:
        def one(_i: int) -> None:
            counter["n"] += 1
            name = f"c-{counter['n']:05d}"
            args = [
                "upgrade",
                name,
                str(tgz),
                "--install",
                "--history-max",
                "2",
                "--output",
                "json",
                "--timeout",
                "300s",
                "--namespace",
                ns,
                "--create-namespace",
                "--reset-values",
                "--take-ownership",
                "--enable-dns",
                *extra,
            ]
            if values == "stdin":
                helm([*args, "--values", "-"], kube_cache=stable_cache if stable else None, stdin=json.dumps(VALUES))
            else:
                helm([*args, "--values", str(values_file)], kube_cache=stable_cache if stable else None)

        return one

    variants: list[tuple[str, Callable[[int], None]]] = [
        ("version (process start)", lambda i: helm(["version", "--short"], kube_cache=None, cluster=False)),
        (
            "template (chart load + render, no cluster)",
            lambda i: helm(
                ["template", "x", str(tgz), "--values", "-"], kube_cache=None, cluster=False, stdin=json.dumps(VALUES)
            ),
        ),
        ("list (kube client + storage read)", lambda i: helm(["list", "-n", ns, "-q"], kube_cache=None)),
        ("install, fresh kube cache (as today)", install(stable=False)),
        ("install, stable kube cache", install(stable=True)),
        ("install, stable cache, values file", install(stable=True, values="file")),
        ("install, stable cache, --disable-openapi-validation", install(["--disable-openapi-validation"], stable=True)),
        ("install, stable cache, --skip-schema-validation", install(["--skip-schema-validation"], stable=True)),
    ]
    rows = []
    for name, fn in variants:
        say(f"helm-cost: {name} x{calls} (load {loadavg()})")
        row: dict[str, Any] = {"variant": name, "calls": calls, "load_before": loadavg()}
        row.update(measure(fn, calls))
        rows.append(row)
    default = next(r for r in rows if r["variant"].startswith("install, fresh"))
    for r in rows:
        r["vs_install_default"] = report.ratio(r["cpu_ms_per_call"], default["cpu_ms_per_call"])
    print(report.table(rows, COLUMNS))
    return {"calls_per_variant": calls, "variants": rows, "load_after": loadavg()}, []
