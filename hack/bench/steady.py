"""steady: N HelmApps in sync, then full re-checks that should cost no helm process.

Two passes are measured on a controller restarted with a helm wrapper that logs every call:

* ``restart``: from the new process' start until it has reconciled all N (its startup listing);
* ``resync``: the level-triggered re-check ``HELMOPS_RESYNC_PERIOD`` later (±10% jitter), from the first
  reconcile past the restart pass until N more have run (CPU from that first reconcile, sampled every
  0.1 s; also recorded from the quiet point before it, which adds the idle wait).

Then a fixed window of steady state (timers only: resync, drift checks, polling) gives CPU per minute.

Progress is read from the controller's log, never from /metrics: a scrape costs the controller CPU that
grows with the number of HelmApps (per-HelmApp series), which would pollute the very figure measured.

Figures per pass: helm invocations (beside the ``helm version`` the driver runs once at start), controller
CPU seconds (utime+stime from /proc/<pid>/stat), wall time; peak RSS (VmHWM) of the process at the end.
"""

from __future__ import annotations

import time
from typing import Any

from support.tools import Tools

from . import report
from .options import Options
from .stack import (
    Controller,
    Stack,
    controller_env,
    loadavg,
    namespace_doc,
    oci_helmapps,
    plain_http_secret,
    say,
    wait_ready,
    wait_until,
    write_helm_wrapper,
)
from .throughput import ready_timeout

COLUMNS = ("pass", "n", "wall_seconds", "cpu_seconds", "cpu_per_100", "helm_calls", "reconciles", "peak_rss_mb")

#: seconds of steady state measured after the passes (covers one drift check at its 60 s default).
STEADY_WINDOW = 75.0

TARGETS = {"helm_calls": 0, "cpu_per_100_seconds": 2.0, "peak_rss_mb_at_500": 250, "restart_chart_downloads": 0}


def _poll_reconciles(ctl: Controller, until: int, timeout: float, what: str,
                     interval: float = 0.25) -> tuple[float, tuple[float, float]]:
    """Waits until the controller's reconcile counter reaches ``until``; returns (when, cpu then)."""
    seen = {"count": 0}

    def check() -> bool:
        seen["count"] = ctl.reconcile_lines()
        return seen["count"] >= until

    when = wait_until(what, check, timeout, interval=interval, progress=lambda: f"{seen['count']}/{until} reconciles")
    return when, ctl.cpu()


def _settle(ctl: Controller, quiet: float = 3.0, timeout: float = 60.0) -> tuple[int, float, float]:
    """Waits until the reconcile counter has not moved for ``quiet`` seconds; returns (counter, CPU seconds
    then, idle CPU seconds per second over that quiet stretch)."""
    last, since, cpu_since = ctl.reconcile_lines(), time.monotonic(), ctl.cpu()[0]
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = ctl.reconcile_lines()
        if now != last:
            last, since, cpu_since = now, time.monotonic(), ctl.cpu()[0]
        elif time.monotonic() - since >= quiet:
            break
    cpu_now = ctl.cpu()[0]
    return last, cpu_now, (cpu_now - cpu_since) / max(time.monotonic() - since, 1e-6)


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.cp is not None
    n = opts.largest
    _, chart_ref = st.publish_oci("1.0.0")
    ns, rel_ns = "steady", "steady-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel_ns), plain_http_secret(ns)], "steady-setup")
    fig: dict[str, Any] = {"helm_concurrency": opts.helm_concurrency, "workers": opts.workers,
                           "resync_seconds": opts.resync_seconds, "load_before": loadavg(), "targets": TARGETS}

    say(f"steady n={n}: installing with a first controller")
    first = st.controller("controller-install", [ns],
                        env=controller_env(opts.workers, opts.helm_concurrency)).start()
    try:
        start = time.monotonic()
        st.apply(oci_helmapps(ns, n, chart_ref, "1.0.0", rel_ns), "steady")
        fig["install_seconds"] = round(wait_ready(st.api, ns, n, ready_timeout(n)) - start, 2)
        fig["install_peak_rss_mb"] = first.hwm_mb()
    finally:
        first.stop()

    # chart downloads from here on: the restarted controller finds every chart in the stack's chart cache
    assert st.registry is not None
    layer, registry_before = st.layer_digest("1.0.0"), len(st.registry.requests())
    helm_log = st.workdir / "helm-calls.log"
    wrapper = write_helm_wrapper(st.workdir / "helm-logging", tools.helm, helm_log)
    say(f"steady n={n}: restarting with a logging helm and HELMOPS_RESYNC_PERIOD={opts.resync_seconds:g}")
    ctl = st.controller("controller-steady", [ns], helm=wrapper, env=controller_env(opts.workers, opts.helm_concurrency,
                                        HELMOPS_RESYNC_PERIOD=f"{opts.resync_seconds:g}"))
    passes: list[dict[str, Any]] = []
    try:
        ctl.start()
        # The process start is the restart pass' start; its CPU until then is startup (imports, login).
        boot_cpu = ctl.cpu()
        end_a, cpu_a = _poll_reconciles(ctl, n, timeout=ready_timeout(n), what="restart pass")
        calls_a = report.helm_calls(helm_log.read_text() if helm_log.exists() else "")
        passes.append({
            "pass": "restart", "n": n, "wall_seconds": round(end_a - ctl.started_at, 2),
            "cpu_seconds": round(cpu_a[0] - boot_cpu[0], 2), "startup_cpu_seconds": round(boot_cpu[0], 2),
            "helm_calls": sum(v for k, v in calls_a.items() if k != "version"), "helm_calls_by_command": calls_a,
            "reconciles": n, "peak_rss_mb": ctl.hwm_mb(),
        })
        fig["restart_chart_downloads"] = report.registry_counts(st.registry.requests()[registry_before:], layer)[
            "chart_layer"
        ]
        base, cpu_quiet, idle_rate = _settle(ctl)
        t_quiet = time.monotonic()
        fig["idle_cpu_per_second"] = round(idle_rate, 4)
        lines_before = sum(calls_a.values())
        say(f"steady n={n}: restart pass done ({base} reconciles); waiting for the timed resync")
        t_b0, cpu_b0 = _poll_reconciles(ctl, base + 1, timeout=opts.resync_seconds + 120, what="resync start",
                                        interval=0.1)
        end_b, cpu_b = _poll_reconciles(ctl, base + n, timeout=ready_timeout(n), what="resync pass")
        calls_all = report.helm_calls(helm_log.read_text() if helm_log.exists() else "")
        calls_b = sum(calls_all.values()) - lines_before
        passes.append({
            "pass": "resync", "n": n, "wall_seconds": round(end_b - t_b0, 2),
            "cpu_seconds": round(cpu_b[0] - cpu_b0[0], 2), "helm_calls": calls_b,
            # from the quiet point after the restart pass: also counts the idle wait and any drift check in it
            "cpu_seconds_from_quiet": round(cpu_b[0] - cpu_quiet, 2),
            "quiet_to_start_seconds": round(t_b0 - t_quiet, 2),
            "reconciles": n, "peak_rss_mb": ctl.hwm_mb(),
        })
        # Steady state beyond the passes: timers only (resync, drift checks, polling), over a fixed window.
        say(f"steady n={n}: measuring {STEADY_WINDOW:.0f}s of steady state")
        cpu_w0, count_w0, lines_w0 = ctl.cpu()[0], ctl.reconcile_lines(), sum(calls_all.values())
        time.sleep(STEADY_WINDOW)
        calls_w = report.helm_calls(helm_log.read_text() if helm_log.exists() else "")
        fig["steady_window_seconds"] = STEADY_WINDOW
        fig["steady_cpu_seconds"] = round(ctl.cpu()[0] - cpu_w0, 2)
        fig["steady_reconciles"] = ctl.reconcile_lines() - count_w0
        fig["steady_helm_calls"] = sum(calls_w.values()) - lines_w0
        fig["helm_actions_after_restart"] = ctl.helm_actions()
        fig["rss_mb_at_end"] = ctl.rss_mb()
    except TimeoutError as exc:
        fig["error"] = str(exc)
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    for p in passes:
        p["cpu_per_100"] = round(100 * p["cpu_seconds"] / p["n"], 3)
    print(report.table(passes, COLUMNS))
    fig["passes"] = passes
    for p in passes:
        fig[f"{p['pass']}_helm_calls"] = p["helm_calls"]
        fig[f"{p['pass']}_cpu_seconds"] = p["cpu_seconds"]
        fig[f"{p['pass']}_cpu_per_100"] = p["cpu_per_100"]
        fig[f"{p['pass']}_wall_seconds"] = p["wall_seconds"]
    fig["peak_rss_mb"] = max((p["peak_rss_mb"] or 0 for p in passes), default=None)
    fig["load_after"] = loadavg()
    return fig, []
