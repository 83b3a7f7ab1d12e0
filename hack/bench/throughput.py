"""throughput: N HelmApps of a ConfigMap-only OCI chart, from one apply to all Ready, against the same N
``helm upgrade --install`` run by ``xargs -P W`` (W = the controller's helm concurrency) from the same .tgz."""

from __future__ import annotations

import statistics
import time
from typing import Any

from support.tools import Tools

from . import report
from .options import Options
from .stack import (
    Stack,
    controller_env,
    helm_baseline,
    loadavg,
    namespace_doc,
    oci_helmapps,
    plain_http_secret,
    say,
    wait_ready,
)

COLUMNS = ("n", "helm_seconds", "helmops_seconds", "ratio_vs_helm", "helm_releases_per_s",
           "helmops_releases_per_s", "apply_seconds", "controller_cpu_s", "helm_cpu_s", "peak_rss_mb")


def ready_timeout(n: int) -> float:
    return max(180.0, 2.0 * n)


def run_one(tools: Tools, st: Stack, opts: Options, n: int, rep: int = 0) -> dict[str, Any]:
    assert st.cp is not None
    tgz, chart_ref = st.publish_oci("1.0.0")
    w = opts.helm_concurrency
    fig: dict[str, Any] = {"n": n, "helm_concurrency": w, "workers": opts.workers, "load_before": loadavg()}

    say(f"throughput n={n}: baseline, xargs -P {w} helm upgrade --install")
    base_ns = f"tp-base-{n}-{rep}"
    names = [f"base-{i:04d}" for i in range(n)]
    helm_s, helm_cpu, failed = helm_baseline(tools, st.workdir, st.cp.kubeconfig, tgz, names, base_ns, w,
                                   timeout=ready_timeout(n) * 2)
    fig["helm_seconds"] = round(helm_s, 2)
    fig["baseline_helm_cpu_s"] = round(helm_cpu, 2)
    fig["helm_failed"] = failed
    fig["helm_releases"] = st.api.count_release_secrets(base_ns)

    ns, rel_ns = f"tp-{n}-{rep}", f"tp-{n}-{rep}-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel_ns), plain_http_secret(ns)], f"{ns}-setup")
    ctl = st.controller(f"controller-{ns}", [ns],
                        env=controller_env(opts.workers, w)).start()
    try:
        docs = oci_helmapps(ns, n, chart_ref, "1.0.0", rel_ns)
        say(f"throughput n={n}: helmops, {opts.workers} workers, helm concurrency {w}")
        cpu0 = ctl.cpu()
        start = time.monotonic()
        fig["apply_seconds"] = round(st.apply(docs, ns), 2)
        done = wait_ready(st.api, ns, n, ready_timeout(n))
        cpu1 = ctl.cpu()
        fig["helmops_seconds"] = round(done - start, 2)
        fig["controller_cpu_s"] = round(cpu1[0] - cpu0[0], 2)
        fig["helm_cpu_s"] = round(cpu1[1] - cpu0[1], 2)
        fig["peak_rss_mb"] = ctl.hwm_mb()
        fig["helm_actions"] = ctl.helm_actions()
    except TimeoutError as exc:
        fig["error"] = str(exc)
        fig["helmops_seconds"] = None
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    fig["ratio_vs_helm"] = report.ratio(fig.get("helmops_seconds"), fig["helm_seconds"])
    fig["helm_releases_per_s"] = report.rate(n, fig["helm_seconds"])
    fig["helmops_releases_per_s"] = report.rate(n, fig.get("helmops_seconds"))
    fig["load_after"] = loadavg()
    return fig


def median_run(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Repetitions of one N folded into one row: the medians of both wall times (their ratio is the
    reported ratio), the rest from the repetition whose helmops time is the median, and every sample."""
    if len(samples) == 1:
        return samples[0]
    ok = [s for s in samples if s.get("helmops_seconds") is not None]
    row = dict(sorted(ok, key=lambda s: s["helmops_seconds"])[len(ok) // 2] if ok else samples[0])
    helm = statistics.median(s["helm_seconds"] for s in samples)
    ops = statistics.median(s["helmops_seconds"] for s in ok) if ok else None
    n = int(row["n"])
    row.update(helm_seconds=round(helm, 2), helmops_seconds=round(ops, 2) if ops is not None else None,
               ratio_vs_helm=report.ratio(ops, helm), helm_releases_per_s=report.rate(n, helm),
               helmops_releases_per_s=report.rate(n, ops), repeats=len(samples),
               samples=[{k: s.get(k) for k in ("helm_seconds", "helmops_seconds", "ratio_vs_helm", "load_before")}
                        for s in samples])
    return row


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    runs = [median_run([run_one(tools, st, opts, n, rep) for rep in range(opts.repeat)]) for n in opts.sizes]
    print(report.table(runs, COLUMNS))
    top = {k: v for k, v in runs[-1].items() if k != "n"}
    top["target_ratio"] = 1.15
    return top, runs if len(runs) > 1 else []
