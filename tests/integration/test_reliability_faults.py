"""Faults: the controller killed mid-upgrade, the management API server gone for a while, chart sources down,
the leader SIGKILLed. Nothing may be lost or duplicated, and recovery needs no manual step.

Helpers and module fixtures come from ``controller_helpers`` (same controller subprocess, helm wrapper
counting invocations). Components this module stops are its own instances, never the session fixtures.
SIGTERM during helm is covered by ``test_controller_e2e.py::test_sigterm_leaves_release_failed_not_pending``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import (
    Cluster,
    Controller,
    HelmLog,
    _try_http,
    helmapp,
    make_ns,
    merge_patch,
    own_control_plane,
    stop_running,
    wait_for,
    wait_ready,
)

from support.chartrepo import ChartRepo
from support.controlplane import ControlPlane
from support.proc import free_port
from support.registry import Registry

pytestmark = pytest.mark.integration

# the e2e module's module-scoped fixtures, shared by name
cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published


def helm_pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def history(c: Cluster, release: str, ns: str) -> list[tuple[int, str]]:
    return [(int(s["version"]), s["status"]) for s in c.release_secrets(release, ns)]


def owned_release_names(c: Cluster, ns: str, name: str) -> set[str]:
    """Every helm storage Secret in the cluster carrying this HelmApp's owner label, by release name."""
    out = c.kubectl("get", "secrets", "-A", "-l", f"owner=helm,helmops.cattle.io/helmapp={ns}.{name}", "-o", "json")
    return {i["metadata"]["labels"]["name"] for i in json.loads(out)["items"]}


def assert_clean_history(c: Cluster, release: str, ns: str) -> list[tuple[int, str]]:
    h = history(c, release, ns)
    revisions = [r for r, _ in h]
    assert len(revisions) == len(set(revisions)), h  # no duplicate history entry
    assert [s for _, s in h].count("deployed") == 1, h  # one live release
    assert not [s for _, s in h if s.startswith("pending-")], h
    return h


# --- 1: kill -9 while helm is mid-upgrade -----------------------------------------------------------------
@pytest.mark.parametrize("helm_too", [False, True], ids=["controller-only", "controller-and-its-helm"])
def test_kill9_mid_upgrade_recovers_without_duplicates(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
    helm_too: bool,
) -> None:
    """SIGKILL of the controller while helm blocks on slowhook's hook (with ``helm_too``, helm's process
    group dies as well, as on node loss: the release is left pending-upgrade). While it is down the spec
    moves to a version that can converge; the restarted controller ends there with one deployed revision."""
    ns = make_ns(cluster, "rk")
    target = f"{ns}-target"
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("rk-*",)).start()
    second: Controller | None = None
    try:
        cluster.apply(
            helmapp("k9", ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=10, maxHistory=10)
        )
        wait_ready(cluster, "k9", ns)
        merge_patch(cluster, "k9", ns, {"spec": {"helm": {"chart": "slowhook"}}})
        wait_for("pending-upgrade", lambda: cluster.release_status("k9", target) == "pending-upgrade")
        pids = wait_for("helm running", lambda: helm_pids(f"upgrade k9 .*--namespace {target}"))
        assert ctl.proc is not None
        ctl.proc.send_signal(signal.SIGKILL)
        ctl.proc.wait()
        if helm_too:
            for pid in pids:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(1)
            assert cluster.release_status("k9", target) == "pending-upgrade"
        merge_patch(cluster, "k9", ns, {"spec": {"helm": {"chart": "hello", "version": "0.2.0"}}})
        second = Controller(management_cluster, helm_log[0], workdir, namespaces=("rk-*",)).start()
        wait_for(
            "0.2.0 deployed",
            lambda: (cluster.configmap("k9-hello", target) or {}).get("chartVersion") == "0.2.0",
            180,
        )
        obj = wait_ready(cluster, "k9", ns)
        assert obj["status"]["version"] == "0.2.0"
        h = assert_clean_history(cluster, "k9", target)
        assert h[-1][1] == "deployed"
        assert owned_release_names(cluster, ns, "k9") == {"k9"}  # no second release
        assert cluster.configmap("k9-slowhook", target) is None
        if helm_too:
            assert "ReleaseRecovered" in cluster.event_reasons("k9", ns)
    finally:
        stop_running(ctl, second)


# --- 2: the management API server goes away for ~20 s --------------------------------------------------
@pytest.fixture(scope="module")
def own_cp(tools: Any) -> Iterator[ControlPlane]:
    with own_control_plane(tools, "reliability") as cp:
        yield cp


def test_apiserver_outage_reconnects_and_converges(
    own_cp: ControlPlane,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    c = Cluster(own_cp)
    ns = make_ns(c, "ao")
    target = f"{ns}-target"
    names = [f"out{i}" for i in range(5)]
    ctl = Controller(own_cp, helm_log[0], workdir, namespaces=("ao-*",)).start()
    try:
        wait_for("controller watching", lambda: "helm " in ctl.text() and " at " in ctl.text())
        for n in names:
            c.apply(helmapp(n, ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=10))
        # stop while the first installs are running
        wait_for(
            "a helm install started",
            lambda: (
                helm_log[1].calls(sub="upgrade")
                and any(f"--namespace {target}" in " ".join(a) for a in helm_log[1].calls(sub="upgrade"))
            ),
            60,
            0.1,
        )
        own_cp.stop_apiserver()
        time.sleep(20)
        assert ctl.proc is not None and ctl.proc.poll() is None, ctl.text()[-3000:]
        assert _try_http(ctl, ctl.health_port, "/healthz") is not None
        own_cp.restart_apiserver()
        # changes made after the outage must all land: the watch has to be re-established
        for n in names:
            merge_patch(c, n, ns, {"spec": {"helm": {"values": {"message": "after"}}}})
        c.apply(helmapp("late", ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=10))
        for n in [*names, "late"]:
            wait_ready(c, n, ns, timeout=240)
            if n != "late":
                wait_for(f"{n} values", lambda n=n: (c.configmap(f"{n}-hello", target) or {}).get("message") == "after")
            assert_clean_history(c, n, target)
        assert ctl.proc.poll() is None
    finally:
        if own_cp._api is None:
            own_cp.restart_apiserver()
        assert ctl.stop() == 0


# --- 3: chart repository and OCI registry down --------------------------------------------------------
@pytest.fixture(scope="module")
def own_sources(tools: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChartRepo, Registry]]:
    d = tmp_path_factory.mktemp("own-sources")
    repo = ChartRepo(tools, workdir=d / "repo", port=free_port())
    reg = Registry(tools, workdir=d / "registry", port=free_port())
    repo.start()
    reg.start()
    try:
        yield repo, reg
    finally:
        repo.stop()
        reg.stop()


def _accepted_false(c: Cluster, name: str, ns: str) -> str | None:
    cond = c.condition(name, ns, "Accepted")
    return str(cond["message"]) if cond.get("status") == "False" and cond.get("message") else None


def test_sources_down_keep_releases_report_and_recover(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    own_sources: tuple[ChartRepo, Registry],
    charts: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    repo, reg = own_sources
    for v in ("0.1.0", "0.2.0"):
        repo.publish(published[f"hello-{v}"])
        oci = charts.push_oci(published[f"hello-{v}"], reg)
    ns = make_ns(cluster, "sd")
    target = f"{ns}-target"
    cluster.kubectl("create", "secret", "generic", "plain", "-n", ns, "--from-literal=basicHTTP=true")
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("sd-*",)).start()
    try:
        cluster.apply(helmapp("web", ns, repo=repo.url, chart="hello", version="0.1.0", maxHistory=10))
        app = helmapp("img", ns, repo="", chart=f"{oci}/hello", version="0.1.0", maxHistory=10)
        app["spec"]["helmSecretName"] = "plain"
        cluster.apply(app)
        for n in ("web", "img"):
            wait_ready(cluster, n, ns)
        fetched_at = time.monotonic()
        before = {n: history(cluster, n, target) for n in ("web", "img")}
        calls_before = {n: len(helm_log[1].calls(n)) for n in ("web", "img")}

        repo.stop()
        reg.stop()
        merge_patch(cluster, "web", ns, {"spec": {"helm": {"version": "0.2.0"}}})
        merge_patch(cluster, "img", ns, {"spec": {"helm": {"version": "0.2.0"}}})
        for n in ("web", "img"):
            message = wait_for(f"{n} Accepted=False", lambda n=n: _accepted_false(cluster, n, ns))
            assert f"cluster local in namespace {ns}: " in message
            assert "refused" in message.lower() or "unavailable" in message.lower(), message
            wait_for(f"{n} NotAccepted Event", lambda n=n: "NotAccepted" in cluster.event_reasons(n, ns))
        # a reconcile that needs only what is cached proceeds, also after the index/tag cache TTL (60 s)
        time.sleep(max(0.0, 62 - (time.monotonic() - fetched_at)))
        cluster.apply(helmapp("cached", ns, repo=repo.url, chart="hello", version="0.1.0", values={"message": "cache"}))
        app = helmapp("cachedimg", ns, repo="", chart=f"{oci}/hello", version="0.1.0", values={"message": "cache"})
        app["spec"]["helmSecretName"] = "plain"
        cluster.apply(app)
        for n in ("cached", "cachedimg"):
            wait_ready(cluster, n, ns)
            assert (cluster.configmap(f"{n}-hello", target) or {}).get("message") == "cache"
        # the deployed releases were not touched: no helm call, same history
        for n in ("web", "img"):
            assert history(cluster, n, target) == before[n]
            assert len(helm_log[1].calls(n)) == calls_before[n]
            assert _accepted_false(cluster, n, ns)

        repo.start()
        reg.start()
        for n in ("web", "img"):
            wait_for(
                f"{n} at 0.2.0",
                lambda n=n: (cluster.configmap(f"{n}-hello", target) or {}).get("chartVersion") == "0.2.0",
                120,
            )
            wait_ready(cluster, n, ns)
            assert cluster.condition(n, ns, "Accepted")["status"] == "True"
            h = assert_clean_history(cluster, n, target)
            assert h[: len(before[n])][:-1] == before[n][:-1] and len(h) == len(before[n]) + 1
            assert not helm_log[1].calls(n, "uninstall") and not helm_log[1].calls(n, "rollback")
    finally:
        assert ctl.stop() == 0


# --- 5: leader SIGKILLed: test_day2_e2e.py::test_two_replicas_one_leader_runs_helm_and_sigkill_hands_over
