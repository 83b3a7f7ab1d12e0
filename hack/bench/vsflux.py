"""vs-flux: helmops, ``xargs -P W helm`` and Flux (both chart modes) installing the same N releases.

One control plane, one HTTP chart repo, the ConfigMap-only chart ``tests/charts/hello``, the same N and the
same concurrency W (helmops' helm slots, xargs' -P, Flux's ``--concurrent``), run one after the other in
alternating order, each side in its own namespaces. Per side: seconds from one apply to all Ready, CPU per
release over every process of the side (helmops: the controller plus its reaped helm children; Flux: both
controllers; baseline: xargs plus helm), peak summed RSS of the side's process tree, and the 1-minute load
average while it ran. Then, for the controllers, one periodic resync pass over the N in-sync releases: CPU
from the first periodic reconcile to the Nth (helmops ``HELMOPS_RESYNC_PERIOD``; Flux the objects'
``interval``, the same number of seconds, chosen longer than an install so no resync overlaps it).

Fairness notes that the figures carry (docs/benchmarks.md): helm runs in-process in Flux and as a process per
action in helmops; Flux's W is W whole reconciles while helmops has W helm slots and more workers; the HTTP
repository and the charts are part of each controller's timed window (the apply creates everything at once);
the baseline installs from the packaged .tgz and does no repo access.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from support.charts import helm_env
from support.tools import Tools

from . import flux, report
from .options import Options
from .procs import Sampler
from .stack import CHART, Stack, controller_env, cpu_of, loadavg, namespace_doc, say, wait_ready, wait_until

SIDES = ("helmops", "helm", "flux_chart", "flux_chartref")
COLUMNS = (
    "n",
    "helmops_seconds",
    "helm_seconds",
    "flux_chart_seconds",
    "flux_chartref_seconds",
    "helmops_vs_helm",
    "helmops_vs_flux_chart",
    "helmops_vs_flux_chartref",
)
CPU_COLUMNS = (
    "side",
    "seconds",
    "cpu_ms_per_release",
    "plane_cpu_ms_per_release",
    "peak_mb",
    "api_requests_per_release",
    "load1_mean",
    "load1_max",
    "resync_cpu_ms_per_release",
    "resync_pass_seconds",
)
VERSION = "1.0.0"


def resync_seconds(opts: Options, n: int) -> float:
    """Long enough that no periodic reconcile lands inside the install window of either side."""
    return max(opts.resync_seconds, 0.4 * n)


def ready_timeout(n: int) -> float:
    return max(240.0, 3.0 * n)


def _settle(count: Callable[[], int], quiet: float = 3.0, timeout: float = 90.0) -> int:
    """Waits until ``count`` has not moved for ``quiet`` seconds; returns it."""
    last, since = count(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def resync_pass(
    count: Callable[[], int],
    cpu: Callable[[], float],
    n: int,
    period: float,
    api: Callable[[], dict[str, int]] | None = None,
) -> dict[str, Any]:
    """CPU and wall time of the next periodic pass: from the first reconcile past a quiet point to the Nth."""
    base = _settle(count)
    seen = {"c": base}

    def reached(target: int) -> Callable[[], bool]:
        def check() -> bool:
            seen["c"] = count()
            return seen["c"] >= target

        return check

    t0 = wait_until("resync start", reached(base + 1), period * 1.2 + 60, interval=0.1)
    cpu0, api0 = cpu(), api() if api else {}
    t1 = wait_until(
        "resync pass",
        reached(base + n),
        period * 0.3 + ready_timeout(n),
        interval=0.1,
        progress=lambda: f"{seen['c'] - base}/{n} reconciles",
    )
    cpu1 = cpu()
    out: dict[str, Any] = {
        "resync_cpu_ms_per_release": round(1000 * (cpu1 - cpu0) / n, 2),
        "resync_pass_seconds": round(t1 - t0, 2),
    }
    if api:
        out.update({f"resync_{k}": v for k, v in api_figures(api0, api(), n).items()})
    return out


#: the harness' own readiness polling (a LIST every 0.5 s), not the side's work
HARNESS_REQUESTS = ("LIST helmapps", "LIST helmreleases")


def plane_cpu(st: Stack) -> float:
    """CPU seconds of the control plane (kube-apiserver + etcd) so far: each side's requests, watches and
    writes cost the shared API server too, on the same two cores."""
    assert st.cp is not None
    return sum((cpu_of(pid)[0] for pid in st.cp.pids), 0.0)


def _plane_row(before: float, after: float, n: int) -> dict[str, Any]:
    return {"plane_cpu_ms_per_release": round(1000 * (after - before) / n, 1)}


def api_snapshot(st: Stack) -> dict[str, int]:
    return report.api_requests(report.parse_metrics(st.api.text("/metrics")))


def api_figures(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, Any]:
    """API requests per release during a side's window, by verb and resource, the harness' own left out."""
    delta = {k: v for k, v in report.count_delta(before, after).items() if k not in HARNESS_REQUESTS}
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:12]
    return {
        "api_requests_per_release": round(sum(delta.values()) / n, 1),
        "api_requests_top": {k: round(v / n, 2) for k, v in top},
    }


def _side_row(side: str, n: int, seconds: float | None, cpu: float | None, stats: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "side": side,
        "n": n,
        "seconds": round(seconds, 2) if seconds is not None else None,
        "cpu_seconds": round(cpu, 2) if cpu is not None else None,
        "cpu_ms_per_release": round(1000 * cpu / n, 1) if cpu is not None else None,
    }
    row.update(stats)
    return row


# --- the four sides ---------------------------------------------------------------------------------------
def run_helmops(st: Stack, opts: Options, n: int, tag: str, period: float, resync: bool = True) -> dict[str, Any]:
    assert st.repo is not None
    ns, rel = f"vf-ops-{tag}", f"vf-ops-{tag}-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel)], f"{ns}-setup")
    ctl = st.controller(
        f"controller-{ns}",
        [ns],
        env=controller_env(opts.workers, opts.helm_concurrency, HELMOPS_RESYNC_PERIOD=f"{period:g}"),
    )
    ctl.start()
    docs = [
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "HelmApp",
            "metadata": {"name": f"app-{i:04d}", "namespace": ns},
            "spec": {
                "helm": {
                    "repo": st.repo.url,
                    "chart": CHART,
                    "version": VERSION,
                    "releaseName": f"app-{i:04d}",
                    "values": {"message": f"bench {i}"},
                },
                "defaultNamespace": rel,
            },
        }
        for i in range(n)
    ]
    sampler = Sampler(lambda: [ctl.pid]).start()
    try:
        cpu0, api0, lines0, plane0 = ctl.cpu(), api_snapshot(st), ctl.reconcile_lines(), plane_cpu(st)
        start = time.monotonic()
        st.apply(docs, ns)
        done = wait_ready(st.api, ns, n, ready_timeout(n))
        cpu1, plane1 = ctl.cpu(), plane_cpu(st)
        row = _side_row("helmops", n, done - start, sum(cpu1) - sum(cpu0), sampler.stop())
        row.update(_plane_row(plane0, plane1, n))
        row.update(api_figures(api0, api_snapshot(st), n))
        row["reconciles_per_release"] = round((ctl.reconcile_lines() - lines0) / n, 2)
        # own CPU vs the reaped helm children's (issue 19 items 2 and 3 are about these two separately)
        row["controller_cpu_ms_per_release"] = round(1000 * (cpu1[0] - cpu0[0]) / n, 1)
        row["helm_cpu_ms_per_release"] = round(1000 * (cpu1[1] - cpu0[1]) / n, 1)
        row["controller_peak_mb"] = ctl.hwm_mb()
        row["helm_actions"] = ctl.helm_actions()
        if resync:
            row.update(resync_pass(ctl.reconcile_lines, lambda: sum(ctl.cpu()), n, period, lambda: api_snapshot(st)))
    except TimeoutError as exc:
        sampler.stop()
        say(f"{exc}\n{ctl.tail()}")
        return {"side": "helmops", "n": n, "seconds": None, "error": str(exc)}
    finally:
        ctl.stop()
    return row


def run_helm(tools: Tools, st: Stack, opts: Options, n: int, tag: str) -> dict[str, Any]:
    """``xargs -P W helm upgrade --install`` from the packaged chart, CPU of xargs and its helm children."""
    assert st.cp is not None and st.charts is not None
    tgz = st.charts.package(CHART, VERSION)
    ns = f"vf-helm-{tag}"
    env = helm_env(st.workdir / "helm-baseline")
    argv = [
        "xargs",
        "-P",
        str(opts.helm_concurrency),
        "-I{}",
        str(tools.helm),
        "upgrade",
        "--install",
        "{}",
        str(tgz),
        "--namespace",
        ns,
        "--create-namespace",
        "--kubeconfig",
        str(st.cp.kubeconfig),
        "--reset-values",
        "--history-max",
        "2",
        "--set",
        "message=bench",
    ]
    api0, plane0 = api_snapshot(st), plane_cpu(st)
    start = time.monotonic()
    p = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    sampler = Sampler(lambda: [p.pid]).start()
    assert p.stdin is not None
    p.stdin.write("".join(f"app-{i:04d}\n" for i in range(n)))
    p.stdin.close()
    # rusage of the reaped xargs includes its reaped helm children (os.wait4 reports exactly this child)
    _, raw, usage = os.wait4(p.pid, 0)
    seconds = time.monotonic() - start
    status = p.returncode = os.waitstatus_to_exitcode(raw)
    stats = sampler.stop()
    err = p.stderr.read() if p.stderr else ""
    row = _side_row("helm", n, seconds, usage.ru_utime + usage.ru_stime, stats)
    row.update(_plane_row(plane0, plane_cpu(st), n))
    row.update(api_figures(api0, api_snapshot(st), n))
    if status != 0:
        row["error"] = f"xargs exited {status}: {err.strip()[-400:]}"
    row["releases"] = st.api.count_release_secrets(ns)
    return row


def run_flux(
    st: Stack, opts: Options, bins: flux.Binaries, n: int, tag: str, mode: str, period: float, resync: bool = True
) -> dict[str, Any]:
    assert st.cp is not None and st.repo is not None
    side = f"flux_{mode}"
    ns, rel = f"vf-{mode}-{tag}", f"vf-{mode}-{tag}-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel)], f"{ns}-setup")
    interval = f"{int(period)}s"
    ctl = flux.Controllers(
        bins, st.cp.kubeconfig, ns, st.workdir, concurrent=opts.helm_concurrency, extra_args=opts.flux_args
    ).start()
    docs = [flux.helm_repository(ns, st.repo.url, interval)]
    if mode == "chartref":
        docs.append(flux.helm_chart(ns, CHART, VERSION, interval))
    docs += flux.helm_releases(ns, n, rel, mode, CHART, VERSION, interval)
    sampler = Sampler(lambda: ctl.pids).start()
    seen = {"ready": 0}

    def all_ready() -> bool:
        items = st.api.get(f"{flux.HELM_API}/namespaces/{ns}/helmreleases")["items"]
        seen["ready"] = sum(flux.release_ready(i) for i in items)
        return seen["ready"] >= n

    try:
        cpu0, api0, plane0 = ctl.cpu(), api_snapshot(st), plane_cpu(st)
        start = time.monotonic()
        st.apply(docs, ns)
        done = wait_until(
            f"{n} HelmReleases Ready in {ns}",
            all_ready,
            ready_timeout(n),
            interval=0.5,
            progress=lambda: f"{seen['ready']}/{n} Ready",
        )
        cpu1, plane1 = ctl.cpu(), plane_cpu(st)
        row = _side_row(side, n, done - start, cpu1 - cpu0, sampler.stop())
        row.update(_plane_row(plane0, plane1, n))
        row.update(api_figures(api0, api_snapshot(st), n))
        row["process_peak_mb"] = ctl.hwm_mb()
        if resync:
            row.update(resync_pass(ctl.helmrelease_reconciles, ctl.cpu, n, period, lambda: api_snapshot(st)))
    except TimeoutError as exc:
        sampler.stop()
        say(str(exc))
        return {"side": side, "n": n, "seconds": None, "error": str(exc)}
    finally:
        ctl.stop()
    return row


# --- one N, all sides, alternating ------------------------------------------------------------------------
def run_n(tools: Tools, st: Stack, opts: Options, bins: flux.Binaries | None, n: int, rep: int) -> list[dict[str, Any]]:
    period = resync_seconds(opts, n)
    # the steady-state pass once per N: it waits a whole period, repetitions add nothing
    resync = rep == 0 and not opts.no_resync
    order = opts.sides if rep % 2 == 0 else tuple(reversed(opts.sides))
    rows = []
    for side in order:
        tag = f"{n}-{rep}"
        say(f"vs-flux n={n} rep={rep}: {side} (load {loadavg()})")
        before = loadavg()
        if side == "helmops":
            row = run_helmops(st, opts, n, tag, period, resync)
        elif side == "helm":
            row = run_helm(tools, st, opts, n, tag)
        else:
            assert bins is not None
            row = run_flux(st, opts, bins, n, tag, side.removeprefix("flux_"), period, resync)
        row.update(rep=rep, load_before=before, load_after=loadavg())
        say(
            f"vs-flux n={n} {side}: {row.get('seconds')} s, {row.get('cpu_ms_per_release')} ms CPU/release, "
            f"peak {row.get('peak_mb')} MB"
        )
        rows.append(row)
    return rows


def summarize(n: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One line per N: the median seconds of each side, the ratios, and per-side medians of the rest."""
    out: dict[str, Any] = {"n": n}
    for side in SIDES:
        mine = [r for r in rows if r["side"] == side and r.get("seconds") is not None]
        for key in (
            "seconds",
            "cpu_ms_per_release",
            "peak_mb",
            "load1_mean",
            "resync_cpu_ms_per_release",
            "api_requests_per_release",
            "plane_cpu_ms_per_release",
        ):
            values = [r[key] for r in mine if r.get(key) is not None]
            name = f"{side}_{key}"
            out[name] = round(statistics.median(values), 2) if values else None
    for other in ("helm", "flux_chart", "flux_chartref"):
        out[f"helmops_vs_{other}"] = report.ratio(out["helmops_seconds"], out[f"{other}_seconds"])
    return out


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.repo is not None and st.charts is not None and st.cp is not None
    bins = None
    if any(s.startswith("flux") for s in opts.sides):
        bins = flux.ensure_binaries()
        for crd in sorted(bins.crds.glob("*.yaml")):
            st.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        st.cp.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/helmreleases.helm.toolkit.fluxcd.io",
            "crd/helmcharts.source.toolkit.fluxcd.io",
            "crd/helmrepositories.source.toolkit.fluxcd.io",
        )
    st.repo.publish(st.charts.package(CHART, VERSION))
    summaries, samples = [], []
    for n in opts.sizes:
        rows = [row for rep in range(opts.repeat) for row in run_n(tools, st, opts, bins, n, rep)]
        samples += rows
        summaries.append(summarize(n, rows))
        print(report.table(rows, CPU_COLUMNS))
    print(report.table(summaries, COLUMNS))
    top: dict[str, Any] = dict(summaries[-1])
    top.pop("n")
    top.update(
        helm_concurrency=opts.helm_concurrency,
        workers=opts.workers,
        flux_concurrent=opts.helm_concurrency,
        flux_versions=bins.versions() if bins else None,
        sides=list(opts.sides),
        summaries=summaries,
        samples=samples,
    )
    return top, []
