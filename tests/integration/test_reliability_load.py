"""Load: 500 HelmApps created at once, then ~50 spec updates per second for 60 s (loopback only, bounded).

Nothing may be lost: every HelmApp ends Ready at its last spec (the ConfigMap the chart renders carries the
last ``message`` written). Printed, not asserted (no timed assertions): the controller's peak memory
(VmHWM), the requests it and its helm processes made to the API server (``apiserver_request_total`` on a
control plane of this module's own, minus the test's own requests), helm invocations, and how long
convergence took. Figures are recorded in docs/reliability.md.

Opt-in: ``HELMOPS_LOAD_TESTS=1 .venv/bin/python -m pytest tests/integration/test_reliability_load.py -s``
(marker ``load``).
"""

from __future__ import annotations

import json
import os
import random
import re
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import (
    Controller,
    HelmLog,
    own_control_plane,
    wait_for,
)
from kubernetes import client as kclient
from kubernetes import config as kconfig

from support.controlplane import ControlPlane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.load,
    pytest.mark.skipif(os.environ.get("HELMOPS_LOAD_TESTS") != "1", reason="load test: set HELMOPS_LOAD_TESTS=1"),
]

workdir, helm_log, published = e2e.workdir, e2e.helm_log, e2e.published

APPS = 500
UPDATES_PER_SECOND = 50
UPDATE_SECONDS = 60
GROUP, VERSION, PLURAL = "fleet.cattle.io", "v1alpha1", "helmapps"


@pytest.fixture(scope="module")
def load_cp(tools: Any) -> Iterator[ControlPlane]:
    with own_control_plane(tools, "load") as cp:
        yield cp


def apiserver_requests(cp: ControlPlane) -> Counter[str]:
    """``apiserver_request_total`` summed by resource (and ``_total``)."""
    req = urllib.request.Request(f"{cp.server}/metrics", headers={"Authorization": f"Bearer {cp.token}"})
    ctx = ssl.create_default_context(cafile=str(cp.ca_file))
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        resource = re.search(r'resource="([^"]*)"', labels)
        verb = re.search(r'verb="([^"]*)"', labels)
        n = float(value)
        out["_total"] += int(n)
        out[f"{verb.group(1) if verb else '?'} {resource.group(1) if resource else '?'}"] += int(n)
    return out


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_500_helmapps_and_50_updates_per_second_lose_nothing(
    load_cp: ControlPlane,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    ns, target = "load-apps", "load-target"
    load_cp.kubectl("create", "namespace", ns)
    load_cp.kubectl("create", "namespace", target)
    api = kconfig.new_client_from_config(config_file=str(load_cp.kubeconfig))
    custom = kclient.CustomObjectsApi(api)
    mine = 0  # requests this test makes, subtracted from the API server's count

    def body(i: int, message: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HelmApp",
            "metadata": {"name": f"app{i:03d}", "namespace": ns},
            "spec": {
                "defaultNamespace": target,
                "helm": {"repo": chart_repo.url, "chart": "hello", "version": "0.1.0", "values": {"message": message}},
            },
        }

    before = apiserver_requests(load_cp)
    mine += 1
    ctl = Controller(load_cp, helm_log[0], workdir, namespaces=(ns,)).start()
    calls_before = len(helm_log[1].calls())
    started = time.monotonic()
    try:
        last: dict[int, str] = {}
        for i in range(APPS):
            last[i] = "v0"
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(i, "v0"))
            mine += 1
        created = time.monotonic()
        rng = random.Random(1)
        seq = 0
        for second in range(UPDATE_SECONDS):
            tick = created + second
            for _ in range(UPDATES_PER_SECOND):
                i = rng.randrange(APPS)
                seq += 1
                last[i] = f"u{seq}"
                patch = {"spec": {"helm": {"values": {"message": last[i]}}}}
                custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, f"app{i:03d}", patch)
                mine += 1
            time.sleep(max(0.0, tick + 1 - time.monotonic()))
        updates_done = time.monotonic()
        core = kclient.CoreV1Api(api)

        def converged() -> bool:
            nonlocal mine
            items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            cms = {c.metadata.name: c.data or {} for c in core.list_namespaced_config_map(target).items}
            mine += 2
            for obj in items:
                i = int(obj["metadata"]["name"][3:])
                st = obj.get("status") or {}
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
                if not ready or st.get("observedGeneration") != obj["metadata"]["generation"]:
                    return False
                if cms.get(f"app{i:03d}-hello", {}).get("message") != last[i]:
                    return False
            return len(items) == APPS

        wait_for("every HelmApp at its last spec", converged, 1800, 5)
        done = time.monotonic()
        assert ctl.proc is not None
        hwm = vm_hwm_kib(ctl.proc.pid)
        after = apiserver_requests(load_cp)
        mine += 1
    finally:
        assert ctl.stop() == 0
    delta = after - before
    total = delta["_total"] - mine
    helm_calls = len(helm_log[1].calls()) - calls_before
    elapsed = done - started
    top = [(k, v) for k, v in delta.most_common(12) if k != "_total"]
    figures = {
        "apps": APPS,
        "updates": seq,
        "update_rate_per_s": round(seq / (updates_done - created), 1),
        "converged_after_updates_s": round(done - updates_done, 1),
        "total_s": round(elapsed, 1),
        "controller_vm_hwm_mib": round(hwm / 1024, 1),
        "apiserver_requests_by_controller_and_helm": total,
        "requests_per_s": round(total / elapsed, 1),
        "helm_invocations": helm_calls,
        "top_requests": top,
    }
    print("LOAD FIGURES " + json.dumps(figures))
    (workdir / "load-figures.json").write_text(json.dumps(figures, indent=2))
    assert hwm > 0
