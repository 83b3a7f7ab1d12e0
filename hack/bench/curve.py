"""curve: time to Ready, controller CPU and peak RSS against N, each N on a fresh controller; a PNG plot.

matplotlib is a benchmark-only tool: it is installed into the running interpreter's environment when missing,
never made a runtime dependency.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.tools import Tools

from . import report
from .options import Options
from .stack import (
    Stack,
    controller_env,
    cpus,
    loadavg,
    namespace_doc,
    oci_helmapps,
    plain_http_secret,
    say,
    wait_ready,
)
from .throughput import ready_timeout

COLUMNS = ("n", "seconds", "releases_per_s", "controller_cpu_s", "cpu_per_100", "peak_rss_mb")


def run_one(tools: Tools, st: Stack, opts: Options, n: int, chart_ref: str) -> dict[str, Any]:
    assert st.cp is not None
    ns, rel_ns = f"curve-{n}", f"curve-{n}-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel_ns), plain_http_secret(ns)], f"curve-{n}-setup")
    ctl = st.controller(f"controller-curve-{n}", [ns],
                        env=controller_env(opts.workers, opts.helm_concurrency)).start()
    fig: dict[str, Any] = {"n": n, "idle_rss_mb": ctl.rss_mb()}
    try:
        say(f"curve n={n}")
        cpu0 = ctl.cpu()
        start = time.monotonic()
        st.apply(oci_helmapps(ns, n, chart_ref, "1.0.0", rel_ns), f"curve-{n}")
        done = wait_ready(st.api, ns, n, ready_timeout(n))
        cpu1 = ctl.cpu()
        fig["seconds"] = round(done - start, 2)
        fig["releases_per_s"] = report.rate(n, fig["seconds"])
        fig["controller_cpu_s"] = round(cpu1[0] - cpu0[0], 2)
        fig["cpu_per_100"] = round(100 * fig["controller_cpu_s"] / n, 3)
        fig["helm_cpu_s"] = round(cpu1[1] - cpu0[1], 2)
        fig["peak_rss_mb"] = ctl.hwm_mb()
    except TimeoutError as exc:
        fig["error"] = str(exc)
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    return fig


def ensure_matplotlib() -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        say("installing matplotlib into this environment (benchmark plots only)")
        out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=False)
        if out.returncode != 0:
            return False
        importlib.invalidate_caches()
    return importlib.util.find_spec("matplotlib") is not None


def plot(runs: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Two panels against N: seconds to all Ready, and peak RSS (MB)."""
    good = [r for r in runs if r.get("seconds") is not None]
    if not good or not ensure_matplotlib():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in good]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    left.plot(ns, [r["seconds"] for r in good], "o-", label="seconds to all Ready")
    left.set_xlabel("HelmApps (N)")
    left.set_ylabel("seconds")
    left.set_title("time to Ready")
    left.set_ylim(bottom=0)
    left.grid(True, alpha=0.3)
    right.plot(ns, [r["peak_rss_mb"] for r in good], "s-", color="tab:red", label="peak RSS (VmHWM)")
    right.plot(ns, [r["idle_rss_mb"] for r in good], "^--", color="tab:gray", label="RSS before apply")
    right.set_xlabel("HelmApps (N)")
    right.set_ylabel("MB")
    right.set_ylim(bottom=0)
    right.set_title("controller memory")
    right.legend(loc="lower right")
    right.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _, chart_ref = st.publish_oci("1.0.0")
    runs = [run_one(tools, st, opts, n, chart_ref) for n in opts.sizes]
    print(report.table(runs, COLUMNS))
    png = opts.results_dir / "curve.png"
    title = (f"helmops curve: ConfigMap chart from OCI, {opts.workers} workers, helm concurrency "
             f"{opts.helm_concurrency}, {cpus()} CPUs")
    top = {k: v for k, v in runs[-1].items() if k != "n"}
    top["png"] = str(png) if plot(runs, png, title) else None
    top["load_after"] = loadavg()
    return top, runs if len(runs) > 1 else []
