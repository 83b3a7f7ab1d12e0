"""Harder faults at scale: the management etcd stopped for 30 s during a 200-HelmApp rollout, and 20 SIGKILLs
of the controller at random moments during a 200-HelmApp rollout.

The SIGKILL takes the controller's helm processes with it, as when a pod's container is killed or its node is
lost: releases are left ``pending-install``/``pending-upgrade`` for the next controller to recover. Between
kills the test keeps changing values, so a change written while no controller runs must still land.

Asserted (nothing may be lost): every HelmApp ends Ready at its last spec (the ConfigMap the chart renders
carries the last ``message`` written), 0 releases left pending, exactly one ``deployed`` revision per
release, no duplicate revision, no release without its HelmApp. Printed (``HARD FAULT FIGURES``), not
asserted: how long convergence took and how many kills caught helm mid-action. Figures are recorded in
docs/reliability.md.

Opt-in like the other load tests (each takes several minutes on 2 cores):
``HELMOPS_LOAD_TESTS=1 .venv/bin/python -m pytest -s tests/integration/test_reliability_hard_faults.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
import urllib3
from controller_helpers import Controller, HelmLog, own_control_plane, wait_for
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.client.exceptions import ApiException

from support.controlplane import ControlPlane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.load,
    pytest.mark.skipif(os.environ.get("HELMOPS_LOAD_TESTS") != "1", reason="load test: set HELMOPS_LOAD_TESTS=1"),
    pytest.mark.timeout(3600),  # minutes of rollout on 2 cores, well past the suite's per-test limit
]

workdir, helm_log, published = e2e.workdir, e2e.helm_log, e2e.published

APPS = int(os.environ.get("HELMOPS_HARD_FAULT_APPS", "200"))  # smaller only to debug the test itself
ETCD_DOWN_SECONDS = 30
KILLS = int(os.environ.get("HELMOPS_HARD_FAULT_KILLS", "20"))
GROUP, VERSION, PLURAL = "fleet.cattle.io", "v1alpha1", "helmapps"


@pytest.fixture
def fault_cp(tools: Any, request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A control plane per test: each test breaks its own."""
    with own_control_plane(tools, f"hard-{request.node.name[5:20]}") as cp:
        yield cp


class Fleet:
    """APPS HelmApps in one namespace, deploying into one target namespace, and what they must end at."""

    def __init__(self, cp: ControlPlane, ns: str, repo: str) -> None:
        self.ns, self.target, self.repo = ns, f"{ns}-target", repo
        cp.kubectl("create", "namespace", ns)
        cp.kubectl("create", "namespace", self.target)
        api = kconfig.new_client_from_config(config_file=str(cp.kubeconfig))
        self.custom = kclient.CustomObjectsApi(api)
        self.core = kclient.CoreV1Api(api)
        self.last: dict[int, str] = {}

    def name(self, i: int) -> str:
        return f"app{i:03d}"

    def create_all(self) -> None:
        for i in range(APPS):
            self.last[i] = "v0"
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "HelmApp",
                "metadata": {"name": self.name(i), "namespace": self.ns},
                "spec": {
                    "defaultNamespace": self.target,
                    "helm": {
                        "repo": self.repo,
                        "chart": "hello",
                        "version": "0.1.0",
                        "values": {"message": "v0"},
                        "timeoutSeconds": 30,
                    },
                },
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def set_message(self, i: int, message: str) -> None:
        patch = {"spec": {"helm": {"values": {"message": message}}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name(i), patch)
        self.last[i] = message

    def deployed_count(self) -> int:
        secrets = self.core.list_namespaced_secret(self.target, label_selector="owner=helm,status=deployed").items
        return len(secrets)

    def converged(self) -> bool:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]
        cms = {c.metadata.name: c.data or {} for c in self.core.list_namespaced_config_map(self.target).items}
        for obj in items:
            i = int(obj["metadata"]["name"][3:])
            st = obj.get("status") or {}
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
            if not ready or st.get("observedGeneration") != obj["metadata"]["generation"]:
                return False
            if cms.get(f"{self.name(i)}-hello", {}).get("message") != self.last[i]:
                return False
        return len(items) == APPS

    def assert_releases_clean(self) -> dict[str, int]:
        """Every release: one deployed revision, nothing pending, no duplicate revision, one per HelmApp."""
        secrets = self.core.list_namespaced_secret(self.target, label_selector="owner=helm").items
        by_release: dict[str, list[tuple[int, str]]] = {}
        for s in secrets:
            labels = s.metadata.labels or {}
            by_release.setdefault(labels["name"], []).append((int(labels["version"]), labels["status"]))
        statuses = Counter(status for revs in by_release.values() for _, status in revs)
        pending = {r: revs for r, revs in by_release.items() if any(st.startswith("pending-") for _, st in revs)}
        assert not pending, pending
        assert set(by_release) == {self.name(i) for i in range(APPS)}, sorted(set(by_release) ^ set(self.last))
        for release, revs in by_release.items():
            versions = [v for v, _ in revs]
            assert len(versions) == len(set(versions)), (release, revs)
            assert [st for _, st in revs].count("deployed") == 1, (release, revs)
        return dict(statuses)


def answered(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check`` as a wait_for condition that treats an API error (the API server still recovering) as no."""

    def run() -> bool:
        try:
            return check()
        except (ApiException, urllib3.exceptions.HTTPError):
            return False

    return run


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (helm and whatever helm started), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: the fields after it are fixed
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        children = [c for c, parent in parents.items() if parent == p]
        out.extend(children)
        frontier.extend(children)
    return out


def kill_all(ctl: Controller) -> int:
    """SIGKILL the controller and its helm processes at once; how many helm-side processes died with it."""
    assert ctl.proc is not None
    below = descendants(ctl.proc.pid)
    for pid in [ctl.proc.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ctl.proc.wait()
    return len(below)


def report(name: str, figures: dict[str, Any], workdir: Path) -> None:
    print(f"HARD FAULT FIGURES {name} " + json.dumps(figures))
    (workdir / f"hard-fault-{name}.json").write_text(json.dumps(figures, indent=2))


def test_etcd_stopped_30s_during_a_200_helmapp_rollout(
    fault_cp: ControlPlane,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    fleet = Fleet(fault_cp, "hf-etcd", chart_repo.url)
    ctl = Controller(fault_cp, helm_log[0], workdir, namespaces=(fleet.ns,)).start()
    started = time.monotonic()
    try:
        fleet.create_all()
        wait_for("a quarter of the releases deployed", lambda: fleet.deployed_count() >= APPS // 4, 600, 1)
        deployed_at_stop = fleet.deployed_count()
        fault_cp.stop_etcd()
        time.sleep(ETCD_DOWN_SECONDS)
        assert ctl.proc is not None and ctl.proc.poll() is None, ctl.text()[-3000:]
        fault_cp.restart_etcd()
        back = time.monotonic()
        # changes written after the outage must all land as well
        for i in range(0, APPS, 2):
            wait_for(f"patch {i}", answered(lambda i=i: fleet.set_message(i, "after") is None), 120, 1)
        wait_for("every HelmApp at its last spec", answered(fleet.converged), 1800, 5)
        done = time.monotonic()
        statuses = fleet.assert_releases_clean()
        assert ctl.proc.poll() is None, "the controller died during the etcd outage"
    finally:
        if fault_cp._etcd is None:
            fault_cp.restart_etcd()
        assert ctl.stop() == 0
    text = ctl.text()
    report(
        "etcd-30s",
        {
            "apps": APPS,
            "etcd_down_s": ETCD_DOWN_SECONDS,
            "deployed_when_etcd_stopped": deployed_at_stop,
            "converged_after_etcd_back_s": round(done - back, 1),
            "total_s": round(done - started, 1),
            "release_revisions_by_status": statuses,
            "pending_left": 0,
            "controller_restarts": 0,
            "tracebacks_in_log": text.count("Traceback"),
        },
        workdir,
    )


def test_20_sigkills_during_a_200_helmapp_rollout(
    fault_cp: ControlPlane,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    fleet = Fleet(fault_cp, "hf-kill", chart_repo.url)
    rng = random.Random(18)
    fleet.create_all()
    started = time.monotonic()
    killed_mid_helm = 0
    seq = 0
    ctl: Controller | None = None
    try:
        for _ in range(KILLS):
            ctl = Controller(fault_cp, helm_log[0], workdir, namespaces=(fleet.ns,)).start()
            pid = ctl.proc.pid if ctl.proc is not None else 0
            # a random moment once helm is at work (startup alone would be killed before any release moved)
            wait_for("helm at work", lambda pid=pid: descendants(pid), 180, 0.2)
            time.sleep(rng.uniform(0.0, 4.0))
            for i in rng.sample(range(APPS), 10):  # changes keep coming, some while no controller runs
                seq += 1
                fleet.set_message(i, f"u{seq}")
            if kill_all(ctl):
                killed_mid_helm += 1
            for i in rng.sample(range(APPS), 5):
                seq += 1
                fleet.set_message(i, f"u{seq}")
        kills_done = time.monotonic()
        ctl = Controller(fault_cp, helm_log[0], workdir, namespaces=(fleet.ns,)).start()
        wait_for("every HelmApp at its last spec", answered(fleet.converged), 1800, 5)
        done = time.monotonic()
        statuses = fleet.assert_releases_clean()
    finally:
        if ctl is not None and ctl.proc is not None and ctl.proc.poll() is None:
            assert ctl.stop() == 0
    report(
        "sigkill-20",
        {
            "apps": APPS,
            "kills": KILLS,
            "kills_with_helm_running": killed_mid_helm,
            "updates": seq,
            "converged_after_last_start_s": round(done - kills_done, 1),
            "total_s": round(done - started, 1),
            "release_revisions_by_status": statuses,
            "pending_left": 0,
            "lost_updates": 0,
        },
        workdir,
    )
