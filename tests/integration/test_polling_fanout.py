"""Polling fan-out end to end: one poll that sees a new version wakes every HelmApp on the same repository.

Five HelmApps poll hourly and one every 3 s, all on ``hello`` in the real HTTP chart repo; after a new version
is published, the fast one's poll finds it and the five others are polled at once (not in an hour), so all
six upgrade within seconds. Chart versions use major 310 so no other test's constraint matches them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import Cluster, Controller, HelmLog, helmapp, make_ns, wait_for

pytestmark = pytest.mark.integration

cluster, workdir, helm_log = e2e.cluster, e2e.workdir, e2e.helm_log


@pytest.fixture(scope="module")
def poller(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("pf-*",)).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


def versions(cluster: Cluster, ns: str) -> dict[str, str]:
    items = json.loads(cluster.kubectl("get", "helmapps.fleet.cattle.io", "-n", ns, "-o", "json"))["items"]
    out = {}
    for o in items:
        st = o.get("status") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        out[o["metadata"]["name"]] = str(st.get("version") or "") if ready else ""
    return out


def test_one_poll_upgrades_every_helmapp_on_the_repository(
    cluster: Cluster, poller: Controller, charts: Any, chart_repo: Any
) -> None:
    ns = make_ns(cluster, "pf")
    target = f"{ns}-t"
    cluster.ensure_namespace(target)
    chart_repo.publish(charts.package("hello", "310.0.0"))
    names = ["fast", *(f"slow{i}" for i in range(5))]
    docs = []
    for name in names:
        app = helmapp(name, ns, repo=chart_repo.url, chart="hello", version="^310", target=target, releaseName=name)
        app["spec"]["pollingInterval"] = "3s" if name == "fast" else "1h"
        docs.append(app)
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    wait_for(
        "all at 310.0.0",
        lambda: set(versions(cluster, ns).values()) == {"310.0.0"} and len(versions(cluster, ns)) == len(names),
        240,
        interval=1,
    )

    chart_repo.publish(charts.package("hello", "310.1.0"))
    published = time.monotonic()
    wait_for("all at 310.1.0", lambda: set(versions(cluster, ns).values()) == {"310.1.0"}, 120, interval=1)
    took = time.monotonic() - published
    print(f"{len(names)} HelmApps upgraded {took:.1f}s after publishing (fast poller 3s, the others 1h)")
    assert "polling the 5 other HelmApp(s) on it now" in poller.text()
    for name in names:
        assert cluster.release_status(name, target) == "deployed"
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "--all", "-n", ns, "--wait=false")
