"""drift: hand edit → reverted with ``correctDrift``, on the local cluster and on a downstream one, and what
the drift watches cost in steady state.

N HelmApps (default 500) with ``correctDrift.enabled``: half deploy to the local cluster, half to a
downstream control plane registered as a Fleet Cluster. ``HELMOPS_DRIFT_CHECK_PERIOD=10m``, so only the
watches can explain a correction within the measurement. Once every HelmApp is Ready and the controller is
quiet:

* ``edits``: one ConfigMap at a time (a random release's, alternating local and downstream) gets its
  ``data.message`` patched; the time until it reads the chart's value again is recorded (polled every
  50 ms). Target: under 5 s on this machine, local and downstream.
* ``steady``: controller CPU over a fixed window with nothing changing, with the watches on, then the same
  window after a restart with ``HELMOPS_DRIFT_WATCH=false`` (the periodic check only).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

from support.controlplane import ControlPlane
from support.tools import Tools

from . import report
from .options import Options
from .stack import (
    Api,
    Controller,
    Stack,
    controller_env,
    kubeconfig_secret,
    loadavg,
    namespace_doc,
    oci_helmapps,
    plain_http_secret,
    say,
    wait_ready,
    wait_until,
)
from .throughput import ready_timeout

EDITS = 10
STEADY_WINDOW = 60.0
TARGETS = {"revert_seconds_max": 5.0}
COLUMNS = ("cluster", "edits", "median_seconds", "max_seconds")


def _message(api: Api, ns: str, name: str) -> str | None:
    try:
        return str((api.get(f"/api/v1/namespaces/{ns}/configmaps/{name}").get("data") or {}).get("message"))
    except Exception:
        return None


def _quiet(ctl: Controller, quiet: float = 5.0, timeout: float = 300.0) -> None:
    """Until the controller's reconcile count has not moved for ``quiet`` seconds."""
    last, since = ctl.reconcile_lines(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = ctl.reconcile_lines()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def _steady_cpu(ctl: Controller) -> float:
    _quiet(ctl)
    cpu0 = ctl.cpu()[0]
    time.sleep(STEADY_WINDOW)
    return round((ctl.cpu()[0] - cpu0) * 60.0 / STEADY_WINDOW, 3)


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.cp is not None
    n = opts.largest
    half = max(1, n // 2)
    _, chart_ref = st.publish_oci("1.0.0")
    far: ControlPlane = st.add_plane("drift-far")
    ns, rel_ns = "drift", "drift-rel"
    st.apply(
        [namespace_doc(ns), namespace_doc(rel_ns), plain_http_secret(ns), kubeconfig_secret(far, ns, "kc-far"),
         {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "far", "namespace": ns},
          "spec": {"kubeConfigSecret": "kc-far"}}],
        "drift-setup",
    )
    correct = {"correctDrift": {"enabled": True}}
    docs = oci_helmapps(ns, half, chart_ref, "1.0.0", rel_ns, prefix="near", extra_spec=correct)
    docs += oci_helmapps(ns, n - half, chart_ref, "1.0.0", rel_ns, prefix="far",
                         extra_spec={**correct, "targets": [{"clusterName": "far"}]})
    env = controller_env(opts.workers, opts.helm_concurrency, HELMOPS_DRIFT_CHECK_PERIOD="10m")
    fig: dict[str, Any] = {"local": half, "downstream": n - half, "load_before": loadavg(),
                           "targets": TARGETS, "drift_check_period": "10m"}
    runs: list[dict[str, Any]] = []
    ctl = st.controller("controller-drift", [ns], env=env).start()
    try:
        start = time.monotonic()
        st.apply(docs, "drift")
        fig["install_seconds"] = round(wait_ready(st.api, ns, n, ready_timeout(n)) - start, 2)
        wait_until("configmaps watched on both clusters",
                   lambda: sum("drift: watching" in line and "configmaps" in line
                               for line in ctl.log.read_text(errors="replace").splitlines()) >= 2, 120)
        _quiet(ctl)
        time.sleep(6)  # the release-record refresh check has indexed every release
        rng = random.Random(5)
        planes = {"local": (st.api, "near", half), "downstream": (Api(far), "far", n - half)}
        times: dict[str, list[float]] = {"local": [], "downstream": []}
        for i in range(2 * EDITS):
            which = "local" if i % 2 == 0 else "downstream"
            api, prefix, count = planes[which]
            name = f"{prefix}-{rng.randrange(count):04d}-hello"
            plane = st.cp if which == "local" else far
            want = _message(api, rel_ns, name)
            patch = json.dumps({"data": {"message": f"edited {i}"}})
            t0 = time.monotonic()
            plane.kubectl("patch", "configmap", name, "-n", rel_ns, "--type", "merge", "-p", patch)
            def back(api: Api = api, name: str = name, want: str | None = want) -> bool:
                return _message(api, rel_ns, name) == want

            wait_until(f"{which} {name} reverted", back, 60, interval=0.05)
            times[which].append(round(time.monotonic() - t0, 2))
            time.sleep(1.5)
        for which, values in times.items():
            runs.append({"cluster": which, "edits": len(values), "median_seconds": statistics.median(values),
                         "max_seconds": max(values), "all_seconds": values})
            fig[f"{which}_revert_median_seconds"] = statistics.median(values)
            fig[f"{which}_revert_max_seconds"] = max(values)
        say(f"drift n={n}: {STEADY_WINDOW:.0f}s of steady state with the watches")
        fig["steady_cpu_seconds_per_minute_watch"] = _steady_cpu(ctl)
        fig["peak_rss_mb_watch"] = ctl.hwm_mb()
    except TimeoutError as exc:
        fig["error"] = str(exc)
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    if "error" not in fig:
        say(f"drift n={n}: the same window after a restart with HELMOPS_DRIFT_WATCH=false")
        off = st.controller("controller-drift-nowatch", [ns], env={**env, "HELMOPS_DRIFT_WATCH": "false"}).start()
        try:
            wait_until("restart pass", lambda: off.reconcile_lines() >= n, ready_timeout(n))
            fig["steady_cpu_seconds_per_minute_no_watch"] = _steady_cpu(off)
            fig["peak_rss_mb_no_watch"] = off.hwm_mb()
        except TimeoutError as exc:
            fig["error"] = str(exc)
        finally:
            off.stop()
    print(report.table(runs, COLUMNS))
    fig["load_after"] = loadavg()
    return fig, runs
