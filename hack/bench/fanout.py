"""fanout: one HelmApp targeting C Fleet clusters (C = 1, 3, 6).

Each Cluster (``fleet.cattle.io/v1alpha1``) has ``spec.kubeConfigSecret`` naming a Secret whose ``value`` is
the kubeconfig of a downstream control plane, one plane per Cluster up to ``MAX_PLANES`` (beyond it Clusters
share planes round-robin, each target with its own release namespace ``fanout-<cluster>``; note that two
Clusters on one API server are not something Fleet supports, and the controller at 9bde6c1 flaps between
install and uninstall when they share one).

Figures: time from the apply to the HelmApp Ready with every cluster ready, chart downloads (GETs of the
chart layer blob in the registry's access log; target 1 per chart version), tag-list and manifest fetches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.controlplane import ControlPlane
from support.tools import REPO_ROOT, Tools

from . import report
from .options import Options
from .stack import (
    Api,
    Stack,
    controller_env,
    kubeconfig_secret,
    loadavg,
    namespace_doc,
    plain_http_secret,
    say,
    wait_until,
)

MAX_PLANES = 6
COLUMNS = ("clusters", "planes", "seconds", "chart_downloads", "tag_lists", "manifests", "releases_found")


def unsupported(controller_dir: Path | None = None) -> str | None:
    """Why the controller cannot deploy to downstream clusters yet (None when it looks like it can).

    The controller is read, not run: targeting lives in ``helmops.clusters``, and a controller that uses
    downstream clusters must read a Cluster's ``kubeConfigSecret``."""
    d = controller_dir or REPO_ROOT / "helmops" / "controller"
    text = "\n".join(p.read_text(errors="replace") for p in sorted(d.glob("*.py")))
    if "helmops.clusters" in text and ("kubeConfigSecret" in text or "kube_config_secret" in text):
        return None
    return ("the controller deploys every HelmApp to the local cluster only: helmops/controller does not use "
            "helmops.clusters targeting or Cluster kubeConfigSecrets yet (docs/controller.md, 'Not done yet')")


def _helmapp(ns: str, names: list[str], chart_ref: str) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp",
        "metadata": {"name": "fanout", "namespace": ns},
        "spec": {
            "helmSecretName": "bench-registry",
            "helm": {"repo": chart_ref, "version": "1.0.0", "releaseName": "fanout"},
            "defaultNamespace": "fanout",
            "targets": [{"name": c, "clusterName": c, "defaultNamespace": f"fanout-{c}"} for c in names],
        },
    }


def _cluster(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": ns, "labels": {"bench": "fanout"}},
            "spec": {"kubeConfigSecret": f"kubeconfig-{name}"}}


def _releases_found(names: list[str], planes: list[ControlPlane]) -> int:
    """Clusters whose plane holds the release (helm storage Secrets in the target's namespace)."""
    return sum(Api(planes[i % len(planes)]).count_release_secrets(f"fanout-{name}") > 0
               for i, name in enumerate(names))


def _all_ready(st: Stack, ns: str, names: list[str], planes: list[ControlPlane]) -> bool:
    """Ready as the HelmApp's status says it, with every cluster counted, and each release really there
    (a controller that ignores targets would report the local cluster Ready instead)."""
    items = st.api.helmapps(ns)
    if not items:
        return False
    status = items[0].get("status") or {}
    c = len(names)
    ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in status.get("conditions") or [])
    if not (ready and int(status.get("readyClusters") or 0) >= c and int(status.get("desiredReadyClusters") or 0) == c):
        return False
    return _releases_found(names, planes) == c


def run_one(tools: Tools, st: Stack, opts: Options, c: int, planes: list[ControlPlane],
            chart_ref: str, layer: str | None) -> dict[str, Any]:
    assert st.cp is not None and st.registry is not None
    ns = f"fanout-{c}"
    names = [f"c{c}-{i}" for i in range(c)]
    setup: list[dict[str, Any]] = [namespace_doc(ns), plain_http_secret(ns)]
    for i, name in enumerate(names):
        setup += [kubeconfig_secret(planes[i % len(planes)], ns, f"kubeconfig-{name}"), _cluster(ns, name)]
    st.apply(setup, f"fanout-{c}-setup")
    ctl = st.controller(f"controller-fanout-{c}", [ns],
                        env=controller_env(opts.workers, opts.helm_concurrency)).start()
    fig: dict[str, Any] = {"clusters": c, "planes": min(c, len(planes))}
    before = len(st.registry.requests())
    try:
        start = time.monotonic()
        st.apply([_helmapp(ns, names, chart_ref)], f"fanout-{c}")
        done = wait_until(f"HelmApp Ready on {c} clusters", lambda: _all_ready(st, ns, names, planes), timeout=300)
        fig["seconds"] = round(done - start, 2)
    except TimeoutError as exc:
        fig["error"] = str(exc)
        say(f"{exc}\n{ctl.tail()}")
    finally:
        ctl.stop()
    counts = report.registry_counts(st.registry.requests()[before:], layer)
    fig.update(chart_downloads=counts["chart_layer"], tag_lists=counts["tags"], manifests=counts["manifests"],
               registry_requests=counts["total"])
    fig["releases_found"] = _releases_found(names, planes)
    return fig


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _, chart_ref = st.publish_oci("1.0.0")
    layer = st.layer_digest("1.0.0")
    count = min(opts.largest, MAX_PLANES)
    say(f"fanout: starting {count} downstream control plane(s)")
    planes = [st.add_plane(f"downstream-{i}") for i in range(count)]
    runs = [run_one(tools, st, opts, c, planes, chart_ref, layer) for c in opts.sizes]
    print(report.table(runs, COLUMNS))
    top = {k: v for k, v in runs[-1].items() if k != "clusters"}
    top.update(load_after=loadavg(), target_chart_downloads=1)
    return top, runs if len(runs) > 1 else []
