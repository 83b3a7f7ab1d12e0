"""Quiet outages end to end (issue 18, item 4): ``helmops run`` on a control plane of this module's own, whose
API server is stopped for ~10 s and started again. The controller's log says so once (one WARNING when the
API server goes away, one INFO when it is back), retries stay at DEBUG, no traceback is printed, and the
controller goes on working afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest

pytestmark = pytest.mark.integration

GONE = "management API server unreachable"
BACK = "management API server reachable again"


@pytest.fixture(scope="module")
def plane(tools: Any) -> Iterator[Any]:
    with e2e.own_control_plane(tools, "quiet") as cp:
        yield cp


def test_api_server_outage_logs_one_warning_and_one_info_and_no_traceback(
    plane: Any, tools: Any, charts: Any, chart_repo: Any, tmp_path: Path
) -> None:
    chart_repo.publish(charts.package("hello", "0.1.0"))
    mgmt = e2e.Cluster(plane)
    ns = e2e.make_ns(mgmt, "quiet")
    # resyncs and drift checks every 2 s: reconciles, the drift monitor and kopf's watchers all retry during
    # the outage (on main each failed reconcile logged a traceback at ERROR, each watch retry an ERROR)
    ctl = e2e.Controller(
        plane, tools.helm, tmp_path, namespaces=("quiet-*",), HELMOPS_RESYNC_PERIOD="2", HELMOPS_DRIFT_CHECK_PERIOD="2"
    ).start()
    try:
        mgmt.apply(e2e.helmapp("calm", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        e2e.wait_ready(mgmt, "calm", ns)
        before = len(ctl.text())
        plane.stop_apiserver()
        try:
            time.sleep(10)
        finally:
            plane.restart_apiserver()
        e2e.wait_for("the controller says the API server is back", lambda: BACK in ctl.text()[before:], 90)
        # still working: a change after the outage is applied
        e2e.merge_patch(mgmt, "calm", ns, {"spec": {"helm": {"values": {"message": "after"}}}})
        e2e.wait_for(
            "change applied after the outage",
            lambda: (mgmt.configmap("calm-hello", f"{ns}-target") or {}).get("message") == "after",
            120,
        )
        time.sleep(3)
        out = ctl.text()[before:]
    finally:
        code = ctl.stop()
    lines = out.splitlines()
    warnings = [ln for ln in lines if " WARNING " in ln]
    errors = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln]
    assert [ln for ln in warnings if GONE in ln] == [ln for ln in warnings if "helmops.kubeio" in ln], out
    assert len([ln for ln in warnings if GONE in ln]) == 1, out
    assert len([ln for ln in lines if BACK in ln and " INFO " in ln]) == 1, out
    assert warnings == [ln for ln in warnings if GONE in ln], out  # nothing else warned about it
    assert errors == [], out
    assert "Traceback" not in out, out
    assert code == 0
