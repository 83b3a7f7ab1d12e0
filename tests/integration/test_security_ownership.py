"""Ownership that cannot be forged or assumed, on the real stack (``helmops run`` subprocess, real helm,
real kube-apiserver).

(a) a release another team installed with plain helm is never upgraded or uninstalled by a HelmApp without
    takeOwnership (no serviceAccount: the controller's own identity); takeOwnership adopts it.
(b) a fake helm storage Secret a tenant plants in its own namespace, labelled for another team's HelmApp, is
    never acted on and does not block that HelmApp's deletion.
(c) a releaseName change still uninstalls the old release, now found through the controller's ledger.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as h
import pytest
from controller_helpers import Cluster, Controller, HelmLog, helmapp, make_ns, merge_patch, wait_for, wait_ready

from helmops.controller.ledger import ledger_name, parse

pytestmark = pytest.mark.integration

cluster, workdir, helm_log, published = h.cluster, h.workdir, h.helm_log, h.published

SYSTEM = f"helmops-own-sys-{os.getpid() % 1000}"
OWNER_LABEL = "helmops.cattle.io/helmapp"


@pytest.fixture(scope="module")
def controller(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    # the ledger lives in the controller's own namespace (NAMESPACE); the controller creates it when missing
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("own-*",), NAMESPACE=SYSTEM).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


def plain_helm(cluster: Cluster, tools: Any, home: Path, *args: str) -> str:
    """Another team's helm, outside helmops."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }
    out = subprocess.run(
        [str(tools.helm), *args, "--kubeconfig", str(cluster.cp.kubeconfig)],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout


def ledger(cluster: Cluster, name: str, ns: str) -> set[tuple[str, str, str]] | None:
    obj = cluster.helmapp(name, ns)
    assert obj is not None
    return ledger_of(cluster, obj["metadata"]["uid"])


def ledger_of(cluster: Cluster, uid: str) -> set[tuple[str, str, str]] | None:
    data = cluster.configmap(ledger_name(uid), SYSTEM)
    if data is None:
        return None
    return {(e.cluster, e.namespace, e.name) for e in parse(data)}


def accepted_false(cluster: Cluster, name: str, ns: str) -> str | None:
    c = cluster.condition(name, ns, "Accepted")
    return str(c["message"]) if c.get("status") == "False" else None


def test_plain_helm_release_is_refused_then_adopted_with_take_ownership(
    cluster: Cluster,
    controller: Controller,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    tools: Any,
    tmp_path: Path,
) -> None:
    ns = make_ns(cluster, "own")
    target = f"{ns}-target"
    plain_helm(cluster, tools, tmp_path, "install", "theirs", str(published["hello-0.1.0"]), "-n", target,
               "--create-namespace", "--set", "message=theirs")  # fmt: skip
    before = cluster.release_secrets("theirs", target)
    assert [s["version"] for s in before] == ["1"]

    # no serviceAccount, no takeOwnership: refused with a condition and an Event, the release untouched
    cluster.apply(helmapp("taker", ns, repo=chart_repo.url, chart="hello", version="0.2.0", releaseName="theirs"))
    msg = wait_for("refused", lambda: accepted_false(cluster, "taker", ns))
    assert (
        f"release theirs in namespace {target} exists and was not installed by this HelmApp; "
        "set spec.helm.takeOwnership to adopt it"
    ) in msg
    wait_for("ReleaseNotOwned Event", lambda: "ReleaseNotOwned" in cluster.event_reasons("taker", ns))
    assert "exists and was not installed by this HelmApp" in controller.text()
    assert cluster.release_secrets("theirs", target) == before
    assert helm_log[1].calls("theirs", "upgrade") == []

    # deleting the refused HelmApp leaves their release installed
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "taker", "-n", ns, "--wait=false")
    wait_for("taker gone", lambda: cluster.helmapp("taker", ns) is None)
    assert cluster.release_secrets("theirs", target) == before
    assert helm_log[1].calls("theirs", "uninstall") == []
    assert (cluster.configmap("theirs-hello", target) or {}).get("message") == "theirs"

    # takeOwnership adopts it: upgraded, labelled for this HelmApp, recorded in the ledger
    cluster.apply(
        helmapp("adopter", ns, repo=chart_repo.url, chart="hello", version="0.2.0", releaseName="theirs",
                takeOwnership=True)
    )  # fmt: skip
    wait_ready(cluster, "adopter", ns)
    newest = cluster.release_secrets("theirs", target)[-1]
    assert newest["status"] == "deployed" and newest["version"] == "2" and newest[OWNER_LABEL] == f"{ns}.adopter"
    assert (cluster.configmap("theirs-hello", target) or {}).get("chartVersion") == "0.2.0"
    assert ledger(cluster, "adopter", ns) == {("local", target, "theirs")}

    # once adopted it is this HelmApp's: deletion uninstalls it and removes the ledger
    uid = cluster.helmapp("adopter", ns)["metadata"]["uid"]  # type: ignore[index]
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "adopter", "-n", ns, "--wait=false")
    wait_for("adopter gone", lambda: cluster.helmapp("adopter", ns) is None)
    assert cluster.release_secrets("theirs", target) == []
    assert ledger_of(cluster, uid) is None


def test_planted_release_secret_neither_blocks_deletion_nor_is_touched(
    cluster: Cluster, controller: Controller, helm_log: tuple[Path, HelmLog], chart_repo: Any,
    published: dict[str, Path],
) -> None:  # fmt: skip
    victim_ns = make_ns(cluster, "own")
    tenant_ns = make_ns(cluster, "own")
    cluster.apply(helmapp("victim", victim_ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
    wait_ready(cluster, "victim", victim_ns)

    # the tenant forges a helm storage Secret in its own namespace, labelled as the victim HelmApp's release
    record = base64.b64encode(b"not a helm release").decode()
    planted = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": "sh.helm.release.v1.bait.v1",
            "namespace": tenant_ns,
            "labels": {
                "owner": "helm",
                "name": "bait",
                "status": "deployed",
                "version": "1",
                OWNER_LABEL: f"{victim_ns}.victim",
            },
        },
        "data": {"release": base64.b64encode(record.encode()).decode()},
    }
    cluster.apply(planted)
    before = cluster.get("secret", "sh.helm.release.v1.bait.v1", tenant_ns)
    assert before is not None

    # a change that triggers the orphan pass, then deletion: both ignore the plant
    merge_patch(cluster, "victim", victim_ns, {"spec": {"helm": {"version": "0.2.0"}}})
    wait_for("upgraded", lambda: cluster.release_status("victim", f"{victim_ns}-target") == "deployed"
             and cluster.release_secrets("victim", f"{victim_ns}-target")[-1]["version"] == "2")  # fmt: skip
    wait_ready(cluster, "victim", victim_ns)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "victim", "-n", victim_ns, "--wait=false")
    wait_for("victim gone", lambda: cluster.helmapp("victim", victim_ns) is None, timeout=60)
    assert cluster.release_secrets("victim", f"{victim_ns}-target") == []

    after = cluster.get("secret", "sh.helm.release.v1.bait.v1", tenant_ns)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert helm_log[1].calls("bait") == []


def test_changed_release_name_uninstalls_the_old_release_through_the_ledger(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    ns = make_ns(cluster, "own")
    target = f"{ns}-target"
    cluster.apply(helmapp("ren", ns, repo=chart_repo.url, chart="hello", version="0.1.0", releaseName="before"))
    wait_ready(cluster, "ren", ns)
    assert ledger(cluster, "ren", ns) == {("local", target, "before")}
    merge_patch(cluster, "ren", ns, {"spec": {"helm": {"releaseName": "after"}}})
    wait_for("new release", lambda: cluster.release_status("after", target) == "deployed")
    wait_for("old release gone", lambda: cluster.release_secrets("before", target) == [])
    wait_for("ledger updated", lambda: ledger(cluster, "ren", ns) == {("local", target, "after")})
    uid = cluster.helmapp("ren", ns)["metadata"]["uid"]  # type: ignore[index]
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "ren", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("ren", ns) is None)
    assert cluster.release_secrets("after", target) == []
    assert ledger_of(cluster, uid) is None
