"""Cluster identity end to end (issue 18, item 1): ``helmops run`` on the management control plane, two Fleet
Clusters whose kubeconfig Secrets reach the same downstream control plane, and one reaching the management
plane under another name than ``local``.

The later Cluster object is refused — a condition on the HelmApp naming it, an Event naming both Cluster
objects — and nothing is installed, upgraded or uninstalled through it: dropping it from the targets (the
data loss of issue 18: before, clean-up uninstalled through it the release the first Cluster still deploys)
leaves the release alone, and deleting the HelmApp uninstalls it once and completes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> e2e.Cluster:
    return e2e.fleet_crds(e2e.Cluster(management_cluster))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity")


@pytest.fixture(scope="module")
def helm_log(workdir: Path, tools: Any) -> tuple[Path, e2e.HelmLog]:
    log = workdir / "helm-calls.log"
    wrapper = workdir / "helm-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{tools.helm}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, e2e.HelmLog(log)


@pytest.fixture(scope="module")
def controller(
    mgmt: e2e.Cluster, management_cluster: Any, helm_log: tuple[Path, e2e.HelmLog], workdir: Path, charts: Any,
    chart_repo: Any,
) -> Iterator[e2e.Controller]:  # fmt: skip
    chart_repo.publish(charts.package("hello", "0.1.0"))
    ctl = e2e.Controller(management_cluster, helm_log[0], workdir, namespaces=("dup-*",)).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


def ready_message(mgmt: e2e.Cluster, name: str, ns: str) -> str:
    return str(mgmt.condition(name, ns, "Ready").get("message") or "")


def test_second_cluster_on_one_api_server_is_refused_and_never_uninstalls(
    mgmt: e2e.Cluster, downstream_cluster: Any, controller: e2e.Controller, chart_repo: Any,
    helm_log: tuple[Path, e2e.HelmLog],
) -> None:  # fmt: skip
    down = e2e.Cluster(downstream_cluster)
    ns = e2e.make_ns(mgmt, "dup")
    e2e.register_cluster(mgmt, ns, "first", downstream_cluster, {"env": "dup"})
    time.sleep(1.1)  # creationTimestamp has one-second resolution: "second" is the later one by time
    e2e.register_cluster(mgmt, ns, "second", downstream_cluster, {"env": "dup"})
    app = e2e.helmapp("shared", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "v1"})
    app["spec"]["targets"] = [{"clusterSelector": {"matchLabels": {"env": "dup"}}}]
    mgmt.apply(app)
    target = f"{ns}-target"
    e2e.wait_for("release on the downstream cluster", lambda: down.release_status("shared", target) == "deployed", 120)

    def refused() -> str | None:
        msg = ready_message(mgmt, "shared", ns)
        return msg if f"cluster second in namespace {ns}: refused" in msg else None

    msg = e2e.wait_for("the duplicate reported on the HelmApp", refused, 120)
    assert f"the same cluster as cluster first in namespace {ns}" in msg and "kube-system namespace UID" in msg
    events = [e for e in mgmt.events("shared", ns) if e["reason"] == "DuplicateCluster"]
    assert events and "cluster second" in events[0]["message"] and "cluster first" in events[0]["message"]
    st = (mgmt.helmapp("shared", ns) or {}).get("status") or {}
    assert st["display"]["readyBundleDeployments"] == "1/2"
    installs = len(helm_log[1].calls("shared", "upgrade"))
    assert installs == 1, helm_log[1].calls("shared")

    # the duplicate leaves the targets: nothing is uninstalled on the shared API server
    e2e.merge_patch(mgmt, "shared", ns, {"spec": {"targets": [{"clusterName": "first"}]}})

    def settled() -> bool:
        st = (mgmt.helmapp("shared", ns) or {}).get("status") or {}
        return bool(st.get("display", {}).get("readyBundleDeployments") == "1/1")

    e2e.wait_for("only the first Cluster targeted", settled, 120)
    e2e.poke(mgmt, "shared", ns)
    time.sleep(5)  # a clean-up of the dropped name would run within the reconcile that follows
    assert helm_log[1].calls("shared", "uninstall") == []
    assert down.release_status("shared", target) == "deployed"

    # deletion: uninstalled once (through the first Cluster), and the HelmApp goes
    mgmt.kubectl("delete", "helmapps.fleet.cattle.io", "shared", "-n", ns, "--wait=false")
    e2e.wait_for("HelmApp gone", lambda: mgmt.helmapp("shared", ns) is None, 120)
    assert down.release_secrets("shared", target) == []
    assert len(helm_log[1].calls("shared", "uninstall")) == 1


def test_a_cluster_reaching_the_management_plane_is_the_local_cluster(
    mgmt: e2e.Cluster, management_cluster: Any, controller: e2e.Controller, chart_repo: Any,
    helm_log: tuple[Path, e2e.HelmLog],
) -> None:  # fmt: skip
    ns = e2e.make_ns(mgmt, "dup")
    e2e.register_cluster(mgmt, ns, "mgmt", management_cluster, {"env": "dup"})
    app = e2e.helmapp("self", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["targets"] = [{"clusterName": "mgmt"}]
    mgmt.apply(app)

    def refused() -> str | None:
        msg = ready_message(mgmt, "self", ns)
        return msg if f"cluster mgmt in namespace {ns}: refused" in msg else None

    msg = e2e.wait_for("the duplicate of the local cluster reported", refused, 120)
    assert "the local cluster (the controller's own)" in msg
    assert helm_log[1].calls("self") == [] and mgmt.release_secrets("self", f"{ns}-target") == []
