"""Drift is noticed when it happens: the deployed objects' kinds are watched, so a hand edit is reverted in
seconds even with a periodic check far away (``HELMOPS_DRIFT_CHECK_PERIOD=10m`` here: only the watches can
explain a correction within the test's wait). The elapsed time is printed, not asserted; the benchmark
``hack/bench/run drift`` measures it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import Cluster, Controller, HelmLog, helmapp, make_ns, wait_for, wait_ready

pytestmark = pytest.mark.integration

cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published

REPO_ROOT = Path(__file__).resolve().parents[2]
WATCH_ENV = {"HELMOPS_DRIFT_CHECK_PERIOD": "10m"}


@pytest.fixture(scope="module")
def watching(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("dw-*",), **WATCH_ENV).start()
    yield ctl
    assert ctl.stop() == 0, ctl.text()[-4000:]


def message(c: Cluster, name: str, ns: str) -> str | None:
    return (c.configmap(name, ns) or {}).get("message")


def test_an_edit_and_a_deletion_are_reverted_in_seconds(
    cluster: Cluster, watching: Controller, chart_repo: Any, published: dict[str, Path], helm_log: tuple[Path, HelmLog]
) -> None:
    ns = make_ns(cluster, "dw")
    target = f"{ns}-target"
    app = helmapp("w", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"})
    app["spec"]["correctDrift"] = {"enabled": True}
    app["spec"]["diff"] = {
        "comparePatches": [{"kind": "ConfigMap", "name": "w-hello", "jsonPointers": ["/data/replicas"]}]
    }
    cluster.apply(app)
    wait_ready(cluster, "w", ns)
    # the release record's watch makes the monitor learn the new release's objects and watch their kinds
    wait_for("configmaps watched", lambda: "drift: watching" in watching.text() and "configmaps" in watching.text(), 60)
    time.sleep(6)  # the release-record refresh check (5 s after the last) has indexed this release

    # a field comparePatches hides is no drift: nothing runs
    patch = json.dumps({"data": {"replicas": "9"}})
    cluster.kubectl("patch", "configmap", "w-hello", "-n", target, "--type", "merge", "-p", patch)
    time.sleep(4)
    assert not helm_log[1].calls("w", "rollback")

    edited = time.monotonic()
    patch = json.dumps({"data": {"message": "edited"}})
    cluster.kubectl("patch", "configmap", "w-hello", "-n", target, "--type", "merge", "-p", patch)
    wait_for("edit reverted", lambda: message(cluster, "w-hello", target) == "one", 60, 0.1)
    print(f"DRIFT WATCH edit reverted after {time.monotonic() - edited:.1f}s")
    assert len(helm_log[1].calls("w", "rollback")) == 1

    wait_for("Ready", lambda: cluster.condition("w", ns, "Ready").get("status") == "True", 60)
    deleted = time.monotonic()
    cluster.kubectl("delete", "configmap", "w-hello", "-n", target)
    wait_for("deletion reverted", lambda: message(cluster, "w-hello", target) == "one", 60, 0.1)
    print(f"DRIFT WATCH deletion reverted after {time.monotonic() - deleted:.1f}s")
    assert len(helm_log[1].calls("w", "rollback")) == 2
    assert "DriftCorrected" in cluster.event_reasons("w", ns)


def test_drift_on_a_downstream_cluster_is_reported_and_corrected(
    cluster: Cluster,
    watching: Controller,
    downstream_cluster: Any,
    chart_repo: Any,
    published: dict[str, Path],
    helm_log: tuple[Path, HelmLog],
) -> None:
    """Detection and correctDrift on a downstream cluster, as on the local one: a watch of its own."""
    down = Cluster(downstream_cluster)
    e2e.fleet_crds(cluster)
    ns = make_ns(cluster, "dw")
    e2e.register_cluster(cluster, ns, "far", downstream_cluster)
    target = f"{ns}-far"
    for name, correct in (("fixed", True), ("seen", False)):
        app = helmapp(name, ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"})
        app["spec"]["defaultNamespace"] = target
        app["spec"]["targets"] = [{"clusterName": "far"}]
        app["spec"]["correctDrift"] = {"enabled": correct}
        cluster.apply(app)
    for name in ("fixed", "seen"):
        wait_ready(cluster, name, ns)
    assert message(down, "fixed-hello", target) == "one"
    watched = f"kind(s) on cluster {ns}/far ("
    wait_for(
        "downstream configmaps watched",
        lambda: any(watched in line and "configmaps" in line for line in watching.text().splitlines()),
        60,
    )
    time.sleep(6)  # the release-record refresh check has indexed both releases

    edited = time.monotonic()
    for name in ("fixed", "seen"):
        patch = json.dumps({"data": {"message": "edited"}})
        down.kubectl("patch", "configmap", f"{name}-hello", "-n", target, "--type", "merge", "-p", patch)
    wait_for("downstream edit reverted", lambda: message(down, "fixed-hello", target) == "one", 60, 0.1)
    print(f"DRIFT WATCH downstream edit reverted after {time.monotonic() - edited:.1f}s")
    assert "DriftCorrected" in cluster.event_reasons("fixed", ns)

    # without correctDrift: reported as Fleet words it, naming the cluster, and left alone
    def modified() -> str:
        cond = cluster.condition("seen", ns, "Ready")
        return str(cond.get("message") or "") if cond.get("status") == "False" else ""

    msg = wait_for("seen reported Modified", modified, 60)
    assert f"cluster far in namespace {ns}" in msg and f"configmap.v1 {target}/seen-hello modified /data/message" in msg
    assert message(down, "seen-hello", target) == "edited"
    assert not helm_log[1].calls("seen", "rollback")
