"""Fairness on the real stack: one namespace's slow releases cannot starve another namespace's HelmApp, the
operator's --max-timeout clamps timeoutSeconds (and says so), and a costly values template is refused.

The test control plane has no kubelet, so the slowhook chart's pre-install Job never finishes: each of its
installs holds a helm slot until helm's --timeout. With a FIFO semaphore, tenant A's three such installs would
fill both helm slots for the whole timeout and tenant B's HelmApp would wait behind them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as h
import pytest
from controller_helpers import Cluster, Controller, HelmLog, helmapp, make_ns, wait_for, wait_ready

pytestmark = pytest.mark.integration

cluster, workdir, helm_log, published = h.cluster, h.workdir, h.helm_log, h.published

SLOTS = 2
CAP_SECONDS = 300  # the smallest cap accepted (helm's own default timeout)


@pytest.fixture(scope="module")
def fair_controller(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(
        management_cluster,
        helm_log[0],
        workdir,
        namespaces=("fair-*",),
        HELMOPS_HELM_CONCURRENCY=str(SLOTS),
        HELMOPS_RECONCILER_WORKERS="6",
    )
    ctl.start_args = ["--max-timeout", f"{CAP_SECONDS}s"]
    ctl.start()
    try:
        yield ctl
    finally:
        code = ctl.stop()
        assert code == 0, ctl.text()[-4000:]


def _drop(cluster: Cluster, name: str, ns: str) -> None:
    """Removes a HelmApp whose release is still blocked on its hook (after the controller stopped)."""
    cluster.kubectl(
        "patch",
        "helmapps.fleet.cattle.io",
        name,
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        check=False,
    )
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", name, "-n", ns, "--wait=false", check=False)


def test_slow_tenant_cannot_starve_another_and_timeout_is_clamped(
    cluster: Cluster,
    fair_controller: Controller,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
) -> None:
    log = helm_log[1]
    noisy, quiet = make_ns(cluster, "fair-a"), make_ns(cluster, "fair-b")
    hogs = [f"hog{i}" for i in range(3)]
    try:
        for name in hogs:
            cluster.apply(
                helmapp(
                    name,
                    noisy,
                    repo=chart_repo.url,
                    chart="slowhook",
                    version="0.1.0",
                    timeoutSeconds=86400,  # a day, far above the operator's cap
                )
            )
        # tenant A's installs are running and queued: one holds a helm slot, the others wait for theirs
        wait_for("a slow install started", lambda: any(log.calls(n, "upgrade") for n in hogs), 60)
        wait_for(
            "the clamp is announced",
            lambda: "TimeoutClamped" in cluster.event_reasons("hog0", noisy),
            60,
        )

        cluster.apply(helmapp("web", quiet, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "web", quiet, timeout=30)

        # tenant A never held both slots: only one of its installs got as far as running helm
        started = [n for n in hogs if log.calls(n, "upgrade")]
        assert len(started) == 1, (started, fair_controller.text()[-3000:])
        # helm was given the capped timeout, not the day the spec asked for
        argv = log.calls(started[0], "upgrade")[0]
        assert argv[argv.index("--timeout") + 1] == f"{CAP_SECONDS}s"
        events = [e for e in cluster.events("hog0", noisy) if e["reason"] == "TimeoutClamped"]
        assert len(events) == 1 and events[0]["type"] == "Warning"
        assert "86400" in events[0]["message"] and f"{CAP_SECONDS}s" in events[0]["message"]
        assert f"{noisy}/hog0 on local: helm.timeoutSeconds 86400 exceeds" in fair_controller.text()  # logged too
    finally:
        fair_controller.stop()
        for name in hogs:
            _drop(cluster, name, noisy)


def test_costly_template_is_refused_with_a_templating_error(
    cluster: Cluster,
    fair_controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
) -> None:
    """An expensive template function fails the HelmApp's values with the cost budget named — quickly, and
    without holding up the controller."""
    if fair_controller.proc is None or fair_controller.proc.poll() is not None:
        fair_controller.start()
    ns = make_ns(cluster, "fair-c")
    cluster.apply(
        helmapp(
            "costly",
            ns,
            repo=chart_repo.url,
            chart="hello",
            version="0.1.0",
            values={"message": "${ uniq (until 5000) | len }"},
        )
    )

    def refused() -> str:
        obj = cluster.helmapp("costly", ns) or {}
        for c in (obj.get("status") or {}).get("conditions") or []:
            if "cost budget exceeded" in str(c.get("message")):
                return str(c["message"])
        return ""

    message = wait_for("values refused", refused, 60)
    assert "uniq" in message
    assert "NotAccepted" in cluster.event_reasons("costly", ns)
    cluster.apply(helmapp("fine", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
    wait_ready(cluster, "fine", ns, timeout=60)
