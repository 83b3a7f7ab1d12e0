"""poll: N HelmApps on ``^1.0.0`` with ``pollingInterval``; after all run 1.0.0, 1.1.0 is pushed.

Figures: seconds from the push until every HelmApp is Ready at 1.1.0 (target: interval + 10 s), and the
registry requests made meanwhile (target O(repositories): the tag list once per interval, not per HelmApp).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.tools import REPO_ROOT, Tools

from . import report
from .options import Options
from .stack import (
    Stack,
    controller_env,
    is_ready,
    loadavg,
    namespace_doc,
    oci_helmapps,
    plain_http_secret,
    say,
    wait_ready,
    wait_until,
)
from .throughput import ready_timeout

COLUMNS = ("n", "interval_s", "seconds_to_first_upgraded", "seconds_to_new_version", "registry_requests", "tag_lists",
           "manifests",
           "chart_downloads")


def unsupported(controller_dir: Path | None = None) -> str | None:
    """Why the controller cannot poll chart sources yet (None when it reads ``pollingInterval``)."""
    d = controller_dir or REPO_ROOT / "helmops" / "controller"
    # polling moved out of helmops/controller into its own package (helmops/polling) in issue 16
    files = [*sorted(d.glob("*.py")), *sorted((d.parent / "polling").glob("*.py"))]
    text = "\n".join(p.read_text(errors="replace") for p in files)
    if "pollingInterval" in text or "polling_interval" in text:
        return None
    return ("the controller does not poll chart sources: helmops/controller never reads spec.pollingInterval "
            "(a new chart version is only seen on a spec change or the periodic resync)")


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.cp is not None and st.registry is not None
    n, interval = opts.largest, opts.polling_interval
    _, chart_ref = st.publish_oci("1.0.0")
    ns, rel_ns = "poll", "poll-rel"
    st.apply([namespace_doc(ns), namespace_doc(rel_ns), plain_http_secret(ns)], "poll-setup")
    fig: dict[str, Any] = {"interval_s": interval, "target_seconds": interval + 10, "load_before": loadavg()}
    ctl = st.controller("controller-poll", [ns],
                        env=controller_env(opts.workers, opts.helm_concurrency)).start()
    try:
        start = time.monotonic()
        st.apply(oci_helmapps(ns, n, chart_ref, "^1.0.0", rel_ns, polling_interval=f"{interval}s"), "poll")
        fig["install_seconds"] = round(wait_ready(st.api, ns, n, ready_timeout(n), version="1.0.0") - start, 2)
        say(f"poll n={n}: all Ready at 1.0.0; pushing 1.1.0")
        st.publish_oci("1.1.0")
        layer = st.layer_digest("1.1.0")
        before = len(st.registry.requests())
        pushed = time.monotonic()
        seen: dict[str, float] = {}

        def progressed() -> bool:
            ready = sum(is_ready(i, "1.1.0") for i in st.api.helmapps(ns))
            now = time.monotonic()
            if ready >= 1:
                seen.setdefault("first", now)
            if ready >= n:
                seen.setdefault("all", now)
            return ready >= n

        wait_until(f"{n} HelmApps Ready at 1.1.0", progressed, interval + ready_timeout(n), interval=0.25)
        # first: how soon a poll noticed (detection); all: plus the N helm upgrades behind it.
        fig["seconds_to_first_upgraded"] = round(seen["first"] - pushed, 2)
        fig["seconds_to_new_version"] = round(seen["all"] - pushed, 2)
        counts = report.registry_counts(st.registry.requests()[before:], layer)
        fig.update(registry_requests=counts["total"], tag_lists=counts["tags"], manifests=counts["manifests"],
                   chart_downloads=counts["chart_layer"])
        fig["helm_actions"] = ctl.helm_actions()
    except TimeoutError as exc:
        fig["error"] = str(exc)
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    fig["n"] = n
    print(report.table([fig], COLUMNS))
    del fig["n"]
    fig["load_after"] = loadavg()
    return fig, []
