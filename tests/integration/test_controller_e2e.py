"""``helmops run`` as a subprocess against a real kube-apiserver, the real helm, a chart repo and a registry.

helm invocations are counted through a wrapper (``HELMOPS_HELM``) that appends each argv to a log, then
execs the real helm. Waits poll generously; no test asserts on durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import controller_helpers as h
import pytest
from controller_helpers import (
    FINALIZER,
    Cluster,
    Controller,
    HelmLog,
    _try_http,
    electing,
    election_env,
    helmapp,
    make_ns,
    merge_patch,
    noop_count,
    poke,
    stop_running,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.integration

# the shared module-scoped fixtures, by name
cluster, workdir, helm_log, controller, published, ns = (
    h.cluster,
    h.workdir,
    h.helm_log,
    h.controller,
    h.published,
    h.ns,
)


# --- tests -----------------------------------------------------------------------------------------------
def test_install_upgrade_noop_and_delete_from_http_repo(
    cluster: Cluster,
    controller: Controller,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    ns: str,
) -> None:
    log = helm_log[1]
    target = f"{ns}-target"
    cluster.apply(
        helmapp(
            "web",
            ns,
            repo=chart_repo.url,
            chart="hello",
            version="0.1.0",
            values={"message": "one"},
            deleteNamespace=None,
        )
    )
    obj = wait_ready(cluster, "web", ns)
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    assert not [a for a in obj["metadata"].get("annotations") or {} if a.startswith("kopf.")]  # no kopf state
    st = obj["status"]
    assert st["version"] == "0.1.0"
    assert st["display"]["readyBundleDeployments"] == "1/1" and st["readyClusters"] == 1
    assert cluster.configmap("web-hello", target) == {"message": "one", "replicas": "1", "chartVersion": "0.1.0"}
    assert wait_for("Installed event", lambda: "Installed" in cluster.event_reasons("web", ns))
    installed = next(e for e in cluster.events("web", ns) if e["reason"] == "Installed")
    assert "0.1.0" in installed["message"] and "sha256:" in installed["message"]
    labels = cluster.release_secrets("web", target)[-1]
    assert labels["status"] == "deployed" and len(labels["helmops.cattle.io/fingerprint"]) == 63

    # version change -> upgrade
    merge_patch(cluster, "web", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    wait_for(
        "chart 0.2.0 deployed", lambda: (cluster.configmap("web-hello", target) or {}).get("chartVersion") == "0.2.0"
    )
    obj = wait_ready(cluster, "web", ns)
    assert obj["status"]["version"] == "0.2.0"
    assert wait_for("GotNewChartVersion", lambda: "GotNewChartVersion" in cluster.event_reasons("web", ns))
    # values change -> upgrade
    merge_patch(cluster, "web", ns, {"spec": {"helm": {"values": {"message": "two"}}}})
    wait_for("values deployed", lambda: (cluster.configmap("web-hello", target) or {}).get("message") == "two")
    wait_ready(cluster, "web", ns)
    assert wait_for("Upgraded events", lambda: cluster.event_reasons("web", ns).count("Upgraded") >= 2)
    upgrades = len(log.calls("web", "upgrade"))
    assert upgrades == 3  # install + 2 upgrades

    # a no-op resync (metadata change) runs no helm at all
    before = noop_count(controller, "web", ns)
    poke(cluster, "web", ns)
    wait_for("no-op reconcile", lambda: noop_count(controller, "web", ns) > before)
    assert len(log.calls("web", "upgrade")) == upgrades
    assert len(cluster.release_secrets("web", target)) <= 2  # maxHistory defaults to 2

    # delete -> uninstall, finalizer removed
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "web", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("web", ns) is None)
    assert cluster.release_secrets("web", target) == []
    assert cluster.configmap("web-hello", target) is None
    assert log.calls("web", "uninstall")


def test_install_from_oci(
    cluster: Cluster, controller: Controller, charts: Any, oci_registry: Any, published: dict[str, Path], ns: str
) -> None:
    ref = charts.push_oci(published["hello-0.1.0"], oci_registry)  # oci://host/charts
    cluster.kubectl("create", "secret", "generic", "oci-plain", "-n", ns, "--from-literal=basicHTTP=true")
    app = helmapp("ocihello", ns, repo="", chart=f"{ref}/hello", version="0.1.0", values={"message": "oci"})
    app["spec"]["helmSecretName"] = "oci-plain"
    cluster.apply(app)
    obj = wait_ready(cluster, "ocihello", ns)
    assert obj["status"]["version"] == "0.1.0"
    assert (cluster.configmap("ocihello-hello", f"{ns}-target") or {}).get("message") == "oci"


def test_restart_runs_no_upgrades(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    log = helm_log[1]
    ns = make_ns(cluster, "rs")
    first = Controller(management_cluster, helm_log[0], workdir, namespaces=("rs-*",)).start()
    try:
        cluster.apply(helmapp("restart", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "restart", ns)
        poke(cluster, "restart", ns)  # one reconcile per change: a metadata change makes the no-op pass
        wait_for("steady", lambda: noop_count(first, "restart", ns) >= 1)
    finally:
        assert first.stop() == 0
    upgrades = len(log.calls("restart", "upgrade"))
    assert upgrades == 1
    second = Controller(management_cluster, helm_log[0], workdir, namespaces=("rs-*",), log_format="json").start()
    try:
        wait_for("resync after restart", lambda: noop_count(second, "restart", ns) >= 1)
        assert len(log.calls("restart", "upgrade")) == upgrades
    finally:
        assert second.stop() == 0
    lines = [json.loads(line) for line in second.text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(doc) for doc in lines)
    decisions = [doc for doc in lines if doc.get("helmapp") == f"{ns}/restart" and "action" in doc]
    assert decisions and decisions[-1]["action"] == "none" and decisions[-1]["phase"] == "deployed-in-sync"


def _expect_not_ready_keeping_release(
    cluster: Cluster, name: str, ns: str, ctype: str, revision: int, cm: str, *, message_has: str = ""
) -> dict[str, Any]:
    target = f"{ns}-target"

    def failed() -> dict[str, Any] | None:
        c = cluster.condition(name, ns, ctype)
        return c if c.get("status") == "False" and c.get("message") else None

    cond = dict(wait_for(f"{ctype}=False on {ns}/{name}", failed))
    assert f"cluster local in namespace {ns}: " in cond["message"]
    if message_has:
        assert message_has in cond["message"].lower(), cond["message"]
    # the previous release keeps running, untouched
    secrets = cluster.release_secrets(name, target)
    deployed = [s for s in secrets if s["status"] == "deployed"]
    assert deployed and int(deployed[-1]["version"]) == revision
    assert cluster.configmap(cm, target) is not None
    return cond


@pytest.mark.parametrize(
    ("case", "patch", "ctype", "message_has"),
    [
        ("badversion", {"spec": {"helm": {"version": "9.9.9"}}}, "Accepted", "9.9.9"),
        ("badchart", {"spec": {"helm": {"chart": "no-such-chart"}}}, "Accepted", "no-such-chart"),
        ("template", {"spec": {"helm": {"chart": "failing", "version": "0.1.0"}}}, "Ready", "mustset is required"),
        (
            "invalid",
            {"spec": {"helm": {"repo": "oci://127.0.0.1:1/a", "chart": "oci://127.0.0.1:1/b"}}},
            "Accepted",
            "both",
        ),
    ],
)
def test_errors_keep_previous_release(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
    ns: str,
    case: str,
    patch: dict[str, Any],
    ctype: str,
    message_has: str,
) -> None:
    cluster.apply(helmapp(case, ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
    wait_ready(cluster, case, ns)
    rev = int(cluster.release_secrets(case, f"{ns}-target")[-1]["version"])
    merge_patch(cluster, case, ns, patch)
    _expect_not_ready_keeping_release(cluster, case, ns, ctype, rev, f"{case}-hello", message_has=message_has)
    obj = cluster.helmapp(case, ns) or {}
    assert obj["status"]["display"]["error"] is True and obj["status"]["display"]["state"] == "ErrApplied"
    # fixing the spec recovers, Accepted back to True
    merge_patch(cluster, case, ns, {"spec": {"helm": {"repo": chart_repo.url, "chart": "hello", "version": "0.2.0"}}})
    wait_for(
        "recovered", lambda: (cluster.configmap(f"{case}-hello", f"{ns}-target") or {}).get("chartVersion") == "0.2.0"
    )
    wait_ready(cluster, case, ns)
    assert cluster.condition(case, ns, "Accepted")["status"] == "True"


def test_values_failing_schema_keep_previous_release(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    cluster.apply(
        helmapp("schemaapp", ns, repo=chart_repo.url, chart="schema", version="0.1.0", values={"replicas": 1})
    )
    wait_ready(cluster, "schemaapp", ns)
    target = f"{ns}-target"
    rev = int(cluster.release_secrets("schemaapp", target)[-1]["version"])
    cms = json.loads(cluster.kubectl("get", "cm", "-n", target, "-o", "json"))["items"]
    cm = next(c["metadata"]["name"] for c in cms if c["metadata"]["name"].startswith("schemaapp"))
    merge_patch(cluster, "schemaapp", ns, {"spec": {"helm": {"values": {"replicas": 0}}}})
    _expect_not_ready_keeping_release(cluster, "schemaapp", ns, "Ready", rev, cm, message_has="schema")
    assert wait_for("UpgradeFailed event", lambda: "UpgradeFailed" in cluster.event_reasons("schemaapp", ns))


def test_wrong_credentials(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    chart_repo_auth: Any,
    charts: Any,
    published: dict[str, Path],
    ns: str,
) -> None:
    chart_repo_auth.publish(published["hello-0.1.0"])
    cluster.apply(helmapp("creds", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
    wait_ready(cluster, "creds", ns)
    rev = int(cluster.release_secrets("creds", f"{ns}-target")[-1]["version"])
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "wrong",
        "-n",
        ns,
        "--from-literal=username=" + chart_repo_auth.username,
        "--from-literal=password=definitely-wrong",
    )
    merge_patch(cluster, "creds", ns, {"spec": {"helmSecretName": "wrong", "helm": {"repo": chart_repo_auth.url}}})
    cond = _expect_not_ready_keeping_release(cluster, "creds", ns, "Accepted", rev, "creds-hello")
    assert "definitely-wrong" not in json.dumps(cluster.helmapp("creds", ns))
    assert "definitely-wrong" not in cond["message"]


def _slow_upgrade(
    cluster: Cluster, tools: Any, release: str, target: str, chart: Path, home: Path, *, install: bool = False
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }
    return subprocess.Popen(
        [
            str(tools.helm),
            "install" if install else "upgrade",
            release,
            str(chart),
            "-n",
            target,
            "--create-namespace",
            "--timeout",
            "10m",
            "--kubeconfig",
            str(cluster.cp.kubeconfig),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_stuck_pending_upgrade_is_recovered(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
    tools: Any,
    tmp_path: Path,
    ns: str,
) -> None:
    target = f"{ns}-target"
    cluster.apply(helmapp("stuck", ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=5))
    wait_ready(cluster, "stuck", ns)
    # someone else's helm upgrade blocks on the slowhook's pre-upgrade Job, then is killed -9
    proc = _slow_upgrade(cluster, tools, "stuck", target, published["slowhook-0.1.0"], tmp_path)
    try:
        wait_for("pending-upgrade", lambda: cluster.release_status("stuck", target) == "pending-upgrade")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert cluster.release_status("stuck", target) == "pending-upgrade"
    poke(cluster, "stuck", ns)
    assert wait_for("ReleaseRecovered", lambda: "ReleaseRecovered" in cluster.event_reasons("stuck", ns), 120)
    wait_for("deployed again", lambda: cluster.release_status("stuck", target) == "deployed", 120)
    wait_ready(cluster, "stuck", ns)
    assert (cluster.configmap("stuck-hello", target) or {}).get("message") == "hello"


@pytest.mark.parametrize("operation", ["install", "upgrade"])
def test_sigterm_leaves_release_failed_not_pending(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
    operation: str,
) -> None:
    """SIGTERM while helm blocks on the slowhook's hook: helm is told to stop, records the release as
    failed (not pending-*), its process group is gone, and the controller exits 0."""
    ns = make_ns(cluster, "st")
    target = f"{ns}-target"
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("st-*",)).start()
    try:
        if operation == "upgrade":
            cluster.apply(helmapp("slow", ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=600))
            wait_ready(cluster, "slow", ns)
            merge_patch(cluster, "slow", ns, {"spec": {"helm": {"chart": "slowhook"}}})
        else:
            cluster.apply(
                helmapp("slow", ns, repo=chart_repo.url, chart="slowhook", version="0.1.0", timeoutSeconds=600)
            )
        wait_for(f"pending-{operation}", lambda: cluster.release_status("slow", target) == f"pending-{operation}", 120)
    finally:
        code = ctl.stop()
    assert code == 0
    assert cluster.release_status("slow", target) == "failed", ctl.text()[-3000:]
    # nothing of ours is left running
    out = subprocess.run(["pgrep", "-f", f"upgrade slow .*--namespace {target}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""
    cluster.kubectl(
        "patch",
        "helmapps.fleet.cattle.io",
        "slow",
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
    )
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "slow", "-n", ns)


def test_delete_when_release_already_gone_and_delete_namespace(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
    tools: Any,
    helm_env: dict[str, str],
    ns: str,
) -> None:
    target = f"{ns}-own"
    app = helmapp("gone", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["namespace"] = target
    app["spec"]["deleteNamespace"] = True
    cluster.apply(app)
    wait_ready(cluster, "gone", ns)
    subprocess.run(
        [str(tools.helm), "uninstall", "gone", "-n", target, "--kubeconfig", str(cluster.cp.kubeconfig)],
        env=helm_env,
        check=True,
        capture_output=True,
    )
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "gone", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("gone", ns) is None)
    nsobj = cluster.get("namespace", target, "") or {}
    # no namespace controller runs here: a deleted namespace stays Terminating
    assert not nsobj or nsobj["metadata"].get("deletionTimestamp")


def test_flag_off_leaves_helmapps_untouched(
    cluster: Cluster,
    management_cluster: Any,
    workdir: Path,
    chart_repo: Any,
    published: dict[str, Path],
    tmp_path: Path,
    tools: Any,
) -> None:
    ns = make_ns(cluster, "off")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {tools.helm} "$@"\n')
    wrapper.chmod(0o755)
    ctl = Controller(
        management_cluster, wrapper, workdir, namespaces=(), enabled=False, EXPERIMENTAL_HELM_OPS="yes"
    ).start()
    try:
        wait_for("disabled log line", lambda: "EXPERIMENTAL_HELM_OPS=true" in ctl.text())
        status, body = wait_for("healthz", lambda: _try_http(ctl, ctl.health_port, "/healthz"))
        assert status == 200 and json.loads(body)["enabled"] is False
        _, metrics = wait_for("metrics", lambda: _try_http(ctl, ctl.metrics_port, "/metrics"))
        assert "helmops_enabled 0.0" in metrics
        cluster.apply(helmapp("off", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        time.sleep(5)  # give a wrongly enabled controller every chance to act
        obj = cluster.helmapp("off", ns) or {}
        assert not obj["metadata"].get("finalizers")
        assert not obj.get("status")
        assert cluster.release_secrets("off", f"{ns}-target") == []
        assert cluster.events("off", ns) == []
        assert not calls.exists()
    finally:
        assert ctl.stop() == 0
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "off", "-n", ns)


def test_health_and_metrics(cluster: Cluster, controller: Controller, ns: str) -> None:
    status, body = wait_for("healthz", lambda: _try_http(controller, controller.health_port, "/healthz"))
    assert status == 200 and "workers" in json.loads(body)
    _, metrics = wait_for("metrics", lambda: _try_http(controller, controller.metrics_port, "/metrics"))
    for name in (
        "helmops_enabled 1.0",
        "helmops_workers_max 4.0",
        "helmops_reconcile_total",
        "helmops_reconcile_duration_seconds_bucket",
        "helmops_helm_actions_total",
        "helmops_helm_action_duration_seconds_bucket",
        "helmops_workers_active",
    ):
        assert name in metrics, name


def test_service_account_impersonation(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    """helm acts as the HelmApp's ServiceAccount: one without RBAC cannot install anything."""
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    app = helmapp("imp", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["serviceAccount"] = "nobody"
    cluster.apply(app)

    def denied() -> str | None:
        c = cluster.condition("imp", ns, "Ready")
        return c["message"] if c.get("status") == "False" and "forbidden" in c.get("message", "") else None

    message = wait_for("forbidden", denied)
    assert f"system:serviceaccount:{ns}:nobody" in message
    assert f"cluster local in namespace {ns}: " in message
    assert cluster.release_secrets("imp", f"{ns}-target") == []
    assert wait_for("InstallFailed", lambda: "InstallFailed" in cluster.event_reasons("imp", ns))


def test_keep_resources_on_delete(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    app = helmapp("keep", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["keepResources"] = True
    cluster.apply(app)
    wait_ready(cluster, "keep", ns)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "keep", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("keep", ns) is None)
    assert cluster.release_status("keep", f"{ns}-target") == "deployed"
    assert cluster.configmap("keep-hello", f"{ns}-target") is not None


def test_stuck_pending_install_is_recovered(
    cluster: Cluster,
    controller: Controller,
    chart_repo: Any,
    published: dict[str, Path],
    tools: Any,
    tmp_path: Path,
    ns: str,
) -> None:
    """A release left pending-install by someone else's killed helm is uninstalled, then installed — with
    takeOwnership, since the release is not this HelmApp's (without it, it would be left alone)."""
    target = f"{ns}-target"
    proc = _slow_upgrade(cluster, tools, "stuck2", target, published["slowhook-0.1.0"], tmp_path, install=True)
    try:
        wait_for("pending-install", lambda: cluster.release_status("stuck2", target) == "pending-install")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    cluster.apply(
        helmapp("stuck2", ns, repo=chart_repo.url, chart="hello", version="0.1.0", timeoutSeconds=5, takeOwnership=True)
    )
    assert wait_for("ReleaseRecovered", lambda: "ReleaseRecovered" in cluster.event_reasons("stuck2", ns), 120)
    wait_ready(cluster, "stuck2", ns)
    assert cluster.release_status("stuck2", target) == "deployed"
    assert (cluster.configmap("stuck2-hello", target) or {}).get("chartVersion") == "0.1.0"


def test_two_helmapps_one_release(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    """The second HelmApp naming an existing release is refused, and deleting it leaves the release alone."""
    cluster.apply(helmapp("first", ns, repo=chart_repo.url, chart="hello", version="0.1.0", releaseName="shared"))
    wait_ready(cluster, "first", ns)
    cluster.apply(helmapp("second", ns, repo=chart_repo.url, chart="hello", version="0.2.0", releaseName="shared"))

    def refused() -> str | None:
        c = cluster.condition("second", ns, "Accepted")
        return c["message"] if c.get("status") == "False" else None

    assert f"belongs to another HelmApp ({ns}.first)" in wait_for("refused", refused)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "second", "-n", ns, "--wait=false")
    wait_for("second gone", lambda: cluster.helmapp("second", ns) is None)
    assert cluster.release_status("shared", f"{ns}-target") == "deployed"
    assert (cluster.configmap("shared-hello", f"{ns}-target") or {}).get("chartVersion") == "0.1.0"


def test_atomic_upgrade_failure_rolls_back(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    target = f"{ns}-target"
    cluster.apply(
        helmapp("atom", ns, repo=chart_repo.url, chart="hello", version="0.1.0", atomic=True, timeoutSeconds=30)
    )
    wait_ready(cluster, "atom", ns)
    # an invalid ConfigMap key fails at apply time (not at render time), so helm's atomic rollback runs
    merge_patch(cluster, "atom", ns, {"spec": {"helm": {"values": {"extra": {"bad key!": "x"}}}}})
    reasons = wait_for("RolledBack", lambda: (r := cluster.event_reasons("atom", ns)) and "RolledBack" in r and r)
    assert "UpgradeFailed" in reasons
    wait_for("deployed again", lambda: cluster.release_status("atom", target) == "deployed")
    assert "bad key!" not in (cluster.configmap("atom-hello", target) or {})
    ready = cluster.condition("atom", ns, "Ready")
    assert ready["status"] == "False" and f"cluster local in namespace {ns}: " in ready["message"]


def test_values_from_secret_and_templating(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    target = f"{ns}-target"
    cluster.ensure_namespace(target)
    # without a serviceAccount, valuesFrom is read from the HelmApp's own namespace only
    # (test_security_identity.py covers the refusals)
    cluster.kubectl(
        "create", "secret", "generic", "vals", "-n", ns, "--from-literal=values.yaml=message: from-secret"
    )
    app = helmapp(
        "vf",
        ns,
        repo=chart_repo.url,
        chart="hello",
        version="0.1.0",
        values={"message": "inline", "extra": {"cluster": "${ .ClusterName }"}},
        valuesFrom=[{"secretKeyRef": {"name": "vals", "namespace": ns, "key": "values.yaml"}}],
    )
    cluster.apply(app)
    wait_ready(cluster, "vf", ns)
    data = cluster.configmap("vf-hello", target) or {}
    assert data.get("message") == "from-secret" and data.get("cluster") == "local"


def test_shard_reconciles_only_its_helmapps(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    ns = make_ns(cluster, "sh")
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("sh-*",))
    ctl.start_args = ["--shard-id", "s1"]
    ctl.start()
    try:
        mine = helmapp("mine", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
        mine["metadata"]["labels"] = {"fleet.cattle.io/shard-ref": "s1"}
        cluster.apply(mine)
        cluster.apply(helmapp("default", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "mine", ns)
        poke(cluster, "default", ns)
        poke(cluster, "mine", ns)
        wait_for("mine steady", lambda: noop_count(ctl, "mine", ns) >= 1)
        other = cluster.helmapp("default", ns) or {}
        assert not other.get("status") and not other["metadata"].get("finalizers")
        assert f"{ns}/default" not in ctl.text()
    finally:
        assert ctl.stop() == 0


def test_fallback_ca_bundle_for_tls_repo(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo_tls: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    """A repo signed by a private CA works through the operator-wide CA bundle Secret (Rancher's tls-ca)."""
    ns = make_ns(cluster, "ca")
    chart_repo_tls.publish(published["hello-0.1.0"])
    bundle_ns = make_ns(cluster, "cabundle")
    cluster.kubectl(
        "create", "secret", "generic", "tls-ca", "-n", bundle_ns, f"--from-file=cacerts.pem={chart_repo_tls.ca_file}"
    )
    ctl = Controller(
        management_cluster,
        helm_log[0],
        workdir,
        namespaces=("ca-*",),
        HELMOPS_CA_BUNDLE_NAMESPACE=bundle_ns,
        HELMOPS_CA_BUNDLE_SECRET="tls-ca",
        HELMOPS_CA_BUNDLE_KEY="cacerts.pem",
    ).start()
    try:
        cluster.apply(helmapp("tlsapp", ns, repo=chart_repo_tls.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "tlsapp", ns)
    finally:
        assert ctl.stop() == 0


def test_leader_election_one_active_controller(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    published: dict[str, Path],
    workdir: Path,
) -> None:
    ns = make_ns(cluster, "le")
    system = make_ns(cluster, "lesys")
    env = election_env(system, "4s", "3s")
    a = electing(management_cluster, helm_log[0], workdir, "le-*", env)
    b = electing(management_cluster, helm_log[0], workdir, "le-*", env)
    a.start()
    try:
        wait_for("a leads", lambda: "leader election:" in a.text() and " leads " in a.text())
        b.start()
        wait_for("b campaigns", lambda: "campaigning" in b.text())
        cluster.apply(helmapp("one", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "one", ns)
        assert f"{ns}/one" in a.text() and f"{ns}/one" not in b.text() and " leads " not in b.text()
        assert a.stop() == 0
        assert "released" in a.text()  # a graceful stop hands the Lease over at once
        wait_for("b takes over", lambda: " leads " in b.text(), 60)
        cluster.apply(helmapp("two", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "two", ns)
        assert f"{ns}/two" in b.text()
    finally:
        stop_running(a, b)
    lease = json.loads(cluster.kubectl("get", "lease", "helmops-leader-election", "-n", system, "-o", "json"))
    assert not lease["spec"].get("holderIdentity")  # released on the last graceful stop


def test_paused_helmapp_is_not_deployed_until_unpaused(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    app = helmapp("paused", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["paused"] = True
    cluster.apply(app)

    def out_of_sync() -> bool:
        st = (cluster.helmapp("paused", ns) or {}).get("status") or {}
        return (st.get("display") or {}).get("state") == "OutOfSync"

    wait_for("OutOfSync", out_of_sync)
    assert cluster.release_secrets("paused", f"{ns}-target") == []
    merge_patch(cluster, "paused", ns, {"spec": {"paused": False}})
    wait_ready(cluster, "paused", ns)
    assert cluster.release_status("paused", f"{ns}-target") == "deployed"


def test_namespace_labels_and_annotations(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    app = helmapp("nsmeta", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    app["spec"]["namespaceLabels"] = {"team": "blue"}
    app["spec"]["namespaceAnnotations"] = {"owner": "blue@example.com"}
    cluster.apply(app)
    wait_ready(cluster, "nsmeta", ns)

    def labelled() -> bool:
        meta = (cluster.get("namespace", f"{ns}-target", "") or {}).get("metadata") or {}
        return (meta.get("labels") or {}).get("team") == "blue" and (
            (meta.get("annotations") or {}).get("owner") == "blue@example.com"
        )

    wait_for("namespace labelled", labelled)


def test_changed_release_name_uninstalls_the_old_release(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path], ns: str
) -> None:
    target = f"{ns}-target"
    cluster.apply(helmapp("ren", ns, repo=chart_repo.url, chart="hello", version="0.1.0", releaseName="before"))
    wait_ready(cluster, "ren", ns)
    merge_patch(cluster, "ren", ns, {"spec": {"helm": {"releaseName": "after"}}})
    wait_for("new release", lambda: cluster.release_status("after", target) == "deployed")
    wait_for("old release gone", lambda: cluster.release_secrets("before", target) == [])
    assert cluster.configmap("before-hello", target) is None and cluster.configmap("after-hello", target)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "ren", "-n", ns, "--wait=false")
    wait_for("HelmApp gone", lambda: cluster.helmapp("ren", ns) is None)
    assert cluster.release_secrets("after", target) == []
