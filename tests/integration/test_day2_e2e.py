"""Day-2 operations end to end: ``helmops run`` as a subprocess (helpers from ``controller_helpers``).

Polling picks up a newly published chart version; 100 HelmApps polling one repository share its index;
drift of a deployed ConfigMap is reported as Modified and corrected only with ``correctDrift``; two
replicas elect one leader that alone runs helm, a SIGKILLed leader is replaced; ``/metrics`` exposes the
day-2 series. Chart versions use majors 2xx so other tests' constraints never match them.
"""

from __future__ import annotations

import json
import re
import signal
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
    electing,
    election_env,
    helmapp,
    make_ns,
    stop_running,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.integration

cluster, workdir, helm_log = e2e.cluster, e2e.workdir, e2e.helm_log

DAY2_ENV = {
    "HELMOPS_DRIFT_CHECK_PERIOD": "1s",
    "HELMOPS_DRIFT_DELAY": "1s",
    "HELMOPS_POLL_CONCURRENCY": "16",
}


@pytest.fixture(scope="module")
def day2(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("d2-*",), **DAY2_ENV).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


@pytest.fixture(autouse=True)
def _hello(charts: Any, chart_repo: Any) -> None:
    """hello 0.1.0, which the e2e module also publishes (this module may run alone)."""
    if not (Path(chart_repo.dir) / "hello-0.1.0.tgz").exists():
        chart_repo.publish(charts.package("hello", "0.1.0"))


def metric_lines(ctl: Controller) -> list[str]:
    got = _try_http(ctl, ctl.metrics_port, "/metrics")
    return [ln for ln in (got[1] if got else "").splitlines() if ln and not ln.startswith("#")]


def metric(ctl: Controller, name: str, /, **labels: str) -> float | None:
    """The value of one series (all given labels must match); None when absent."""
    for ln in metric_lines(ctl):
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", ln)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def series(ctl: Controller, name: str, /, **labels: str) -> list[str]:
    out = []
    for ln in metric_lines(ctl):
        if not ln.startswith(name + "{") and not ln.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in ln for k, v in labels.items()):
            out.append(ln)
    return out


def display_state(c: Cluster, name: str, ns: str) -> str:
    return str((((c.helmapp(name, ns) or {}).get("status") or {}).get("display") or {}).get("state") or "")


def edit_configmap(c: Cluster, name: str, ns: str, message: str) -> None:
    c.kubectl("patch", "configmap", name, "-n", ns, "--type", "merge", "-p", json.dumps({"data": {"message": message}}))


# --- polling ---------------------------------------------------------------------------------------------
def test_polling_deploys_a_new_chart_version(cluster: Cluster, day2: Controller, charts: Any, chart_repo: Any) -> None:
    ns = make_ns(cluster, "d2")
    chart_repo.publish(charts.package("hello", "201.0.0"))
    app = helmapp("poll", ns, repo=chart_repo.url, chart="hello", version="~201.0.0")
    app["spec"]["pollingInterval"] = "5s"
    cluster.apply(app)
    obj = wait_ready(cluster, "poll", ns)
    assert obj["status"]["version"] == "201.0.0"

    def polled() -> dict[str, Any] | None:
        st = (cluster.helmapp("poll", ns) or {}).get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        return st if st.get("lastPollingTriggered") and conds.get("Polled", {}).get("status") == "True" else None

    first = wait_for("a poll recorded", polled, 60)
    chart_repo.publish(charts.package("hello", "201.0.1"))
    published = time.monotonic()

    def upgraded() -> bool:
        st = (cluster.helmapp("poll", ns) or {}).get("status") or {}
        return st.get("version") == "201.0.1" and display_state(cluster, "poll", ns) == ""

    wait_for("the new version deployed", upgraded, 90)
    print(f"new version deployed {time.monotonic() - published:.1f}s after publishing (interval 5s ±10%)")
    assert cluster.release_secrets("poll", f"{ns}-target")[-1]["status"] == "deployed"
    assert "GotNewChartVersion" in cluster.event_reasons("poll", ns)
    later = wait_for(
        "another poll", lambda: (p := polled()) and p["lastPollingTriggered"] != first["lastPollingTriggered"] and p, 60
    )
    assert later

    # an exact version is never polled; an unreachable repository makes Polled False with an Event
    bad = helmapp("pollbad", ns, repo="http://127.0.0.1:9/", chart="hello", version="~201.0.0")
    bad["metadata"]["annotations"] = {"helmops.cattle.io/polling-interval": "2s"}
    cluster.apply(bad)

    def failed_poll() -> bool:
        return cluster.condition("pollbad", ns, "Polled").get("status") == "False"

    wait_for("Polled=False", failed_poll, 60)
    assert "FailedToGetNewChartVersion" in cluster.event_reasons("pollbad", ns)
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "pollbad", "-n", ns, "--wait=false")


def test_hundred_helmapps_share_the_repository_index(
    cluster: Cluster, day2: Controller, charts: Any, chart_repo: Any
) -> None:
    ns = make_ns(cluster, "d2")
    chart_repo.publish(charts.package("hello", "202.0.0"))
    n = 100
    docs = []
    for i in range(n):
        app = helmapp(f"many{i}", ns, repo=chart_repo.url, chart="hello", version="^202", target=f"{ns}-t")
        app["spec"]["pollingInterval"] = "5s"
        docs.append(app)
    cluster.ensure_namespace(f"{ns}-t")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def all_ready() -> bool:
        out = json.loads(cluster.kubectl("get", "helmapps.fleet.cattle.io", "-n", ns, "-o", "json"))["items"]
        ready = [
            o
            for o in out
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions") or []
            )
        ]
        return len(ready) == n

    wait_for("100 HelmApps Ready", all_ready, 900, interval=3)
    polls_before = metric(day2, "helmops_polls_total", result="unchanged") or 0.0
    chart_repo.reset_requests()
    window = 15.0  # three polling intervals
    time.sleep(window)
    index_requests = [r for r in chart_repo.requests() if r.startswith("GET /index.yaml")]
    polls = (metric(day2, "helmops_polls_total", result="unchanged") or 0.0) - polls_before
    print(f"{n} HelmApps, {window:.0f}s: {polls:.0f} polls, {len(index_requests)} index requests")
    assert polls >= n  # every HelmApp polled at least once in the window
    # O(repositories): the shared cache (max age: half the interval) allows a few requests per interval,
    # however many HelmApps poll; one request per poll would be >= 100.
    assert len(index_requests) <= 3 * (window / 5.0) + 2, index_requests
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "--all", "-n", ns, "--wait=false")


# --- drift -----------------------------------------------------------------------------------------------
def test_drift_is_reported_and_left_alone_without_correct_drift(
    cluster: Cluster, day2: Controller, chart_repo: Any, helm_log: tuple[Path, HelmLog]
) -> None:
    ns = make_ns(cluster, "d2")
    cluster.apply(helmapp("keep", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"}))
    wait_ready(cluster, "keep", ns)
    target = f"{ns}-target"
    edit_configmap(cluster, "keep-hello", target, "edited")

    def modified() -> dict[str, Any] | None:
        st = (cluster.helmapp("keep", ns) or {}).get("status") or {}
        return st if (st.get("display") or {}).get("state") == "Modified" else None

    st = wait_for("Modified", modified, 60)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Modified"
    assert f"configmap.v1 {target}/keep-hello modified /data/message" in ready["message"], ready
    assert st["summary"]["modified"] == 1
    assert st["summary"]["nonReadyResources"][0]["bundleState"] == "Modified"
    time.sleep(4)  # a few more check periods: still reported, never corrected
    assert (cluster.configmap("keep-hello", target) or {}).get("message") == "edited"
    assert display_state(cluster, "keep", ns) == "Modified"
    assert not helm_log[1].calls("keep", "rollback")
    # a server-side default or a field the chart does not set is not drift
    cluster.kubectl("label", "configmap", "keep-hello", "-n", target, "unrelated=1")
    # putting the value back clears the report without any helm action
    edit_configmap(cluster, "keep-hello", target, "one")
    wait_for("Ready again", lambda: cluster.condition("keep", ns, "Ready").get("status") == "True", 60)


def test_drift_is_corrected_with_correct_drift(
    cluster: Cluster, day2: Controller, chart_repo: Any, helm_log: tuple[Path, HelmLog]
) -> None:
    ns = make_ns(cluster, "d2")
    app = helmapp("fix", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"})
    app["spec"]["correctDrift"] = {"enabled": True}
    app["spec"]["diff"] = {
        "comparePatches": [{"kind": "ConfigMap", "name": "fix-hello", "jsonPointers": ["/data/replicas"]}]
    }
    cluster.apply(app)
    wait_ready(cluster, "fix", ns)
    target = f"{ns}-target"
    revision = len(cluster.release_secrets("fix", target))

    # a field hidden by comparePatches is not drift
    cluster.kubectl(
        "patch", "configmap", "fix-hello", "-n", target, "--type", "merge", "-p", '{"data":{"replicas":"9"}}'
    )
    time.sleep(4)
    assert not helm_log[1].calls("fix", "rollback")
    assert display_state(cluster, "fix", ns) == ""

    edit_configmap(cluster, "fix-hello", target, "edited")
    wait_for("reverted", lambda: (cluster.configmap("fix-hello", target) or {}).get("message") == "one", 90)
    assert "DriftCorrected" in cluster.event_reasons("fix", ns)
    assert len(helm_log[1].calls("fix", "rollback")) == 1
    assert f"drift: HelmApp {ns}/fix: configmap.v1 {target}/fix-hello modified /data/message" in day2.text()
    wait_for("Ready", lambda: cluster.condition("fix", ns, "Ready").get("status") == "True", 60)
    history = cluster.release_secrets("fix", target)
    assert history[-1]["status"] == "deployed" and int(history[-1]["version"]) == revision + 1
    # the rollback keeps helmops' labels, so the next reconcile is a no-op, not an upgrade
    assert history[-1].get("helmops.cattle.io/fingerprint")
    e2e.poke(cluster, "fix", ns)
    wait_for("no-op", lambda: e2e.noop_count(day2, "fix", ns) >= 1, 60)
    assert not helm_log[1].calls("fix", "upgrade")[1:]  # only the first install (upgrade --install)


# --- metrics ---------------------------------------------------------------------------------------------
def test_metrics_after_a_scripted_scenario(cluster: Cluster, day2: Controller, charts: Any, chart_repo: Any) -> None:
    ns = make_ns(cluster, "d2")
    chart_repo.publish(charts.package("hello", "203.0.0"))
    app = helmapp("met", ns, repo=chart_repo.url, chart="hello", version="~203.0.0")
    app["spec"]["pollingInterval"] = "2s"
    app["spec"]["correctDrift"] = {"enabled": True}
    cluster.apply(app)
    wait_ready(cluster, "met", ns)
    target = f"{ns}-target"
    labels = {"name": "met", "namespace": ns, "repo": chart_repo.url, "chart": "hello"}
    wait_for("fleet gauges", lambda: metric(day2, "fleet_helmapp_ready_clusters", **labels, version="203.0.0") == 1.0)
    assert metric(day2, "fleet_helmapp_desired_ready_clusters", **labels, version="203.0.0") == 1.0
    wait_for("resources counted", lambda: metric(day2, "fleet_helmapp_resources_desired_ready", **labels) == 1.0)

    chart_repo.publish(charts.package("hello", "203.0.1"))
    wait_for("upgraded", lambda: (cluster.helmapp("met", ns) or {}).get("status", {}).get("version") == "203.0.1", 90)
    wait_ready(cluster, "met", ns)
    wait_for(
        "gauge follows the version",
        lambda: metric(day2, "fleet_helmapp_ready_clusters", **labels, version="203.0.1") == 1.0,
    )
    for name in e2e_fleet_metrics():
        got = [s for s in series(day2, name) if f'namespace="{ns}"' in s and 'name="met"' in s]
        assert len(got) == 1, (name, got)  # one series per HelmApp: the 203.0.0 one is gone
        assert 'version="203.0.1"' in got[0]

    edit_configmap(cluster, "met-hello", target, "edited")
    wait_for("corrected", lambda: (metric(day2, "helmops_drift_corrections_total", result="success") or 0) >= 1, 90)
    assert (metric(day2, "helmops_drift_detections_total") or 0) >= 1
    assert (metric(day2, "helmops_drift_checks_total") or 0) >= 1
    assert (metric(day2, "helmops_polls_total", result="new_version") or 0) >= 1
    assert (metric(day2, "helmops_polls_total", result="unchanged") or 0) >= 1
    assert metric(day2, "helmops_workers_max") == 4.0
    assert metric(day2, "helmops_workers_active") is not None
    assert metric(day2, "helmops_leader") == 1.0
    assert (
        metric(day2, "helmops_helm_action_outcome_duration_seconds_count", action="install", result="success") or 0
    ) >= 1
    assert (
        metric(day2, "helmops_helm_action_outcome_duration_seconds_count", action="upgrade", result="success") or 0
    ) >= 1
    assert (
        metric(day2, "helmops_helm_action_outcome_duration_seconds_count", action="rollback", result="success") or 0
    ) >= 1
    assert (metric(day2, "helmops_chart_cache_total", cache="index", result="hit") or 0) >= 1
    assert (metric(day2, "helmops_chart_cache_total", cache="index", result="miss") or 0) >= 1
    assert (metric(day2, "helmops_chart_cache_total", cache="chart", result="miss") or 0) >= 1

    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "met", "-n", ns)
    wait_for(
        "series removed",
        lambda: not [s for s in series(day2, "fleet_helmapp_ready_clusters") if f'namespace="{ns}"' in s],
    )
    for name in e2e_fleet_metrics():
        assert not [s for s in series(day2, name) if f'namespace="{ns}"' in s], name


def e2e_fleet_metrics() -> list[str]:
    return [
        "fleet_helmapp_desired_ready_clusters",
        "fleet_helmapp_ready_clusters",
        *(
            f"fleet_helmapp_resources_{k}"
            for k in (
                "desired_ready",
                "missing",
                "modified",
                "not_ready",
                "orphaned",
                "ready",
                "unknown",
                "wait_applied",
            )
        ),
    ]


# --- HA --------------------------------------------------------------------------------------------------
def test_two_replicas_one_leader_runs_helm_and_sigkill_hands_over(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], chart_repo: Any, workdir: Path
) -> None:
    ns = make_ns(cluster, "d2ha")
    system = make_ns(cluster, "d2sys")
    env = election_env(system)
    a = electing(management_cluster, helm_log[0], workdir, "d2ha-*", env)
    b = electing(management_cluster, helm_log[0], workdir, "d2ha-*", env)
    a.start()
    try:
        wait_for("a leads", lambda: " leads " in a.text())
        b.start()
        wait_for("b campaigns", lambda: "campaigning" in b.text())
        # the standby serves /healthz (liveness) and reports itself as not leading
        health = wait_for("standby /healthz", lambda: _try_http(b, b.health_port, "/healthz"), 30)
        assert health[0] == 200 and json.loads(health[1])["leader"] is False
        assert wait_for("standby metrics", lambda: metric(b, "helmops_leader") == 0.0 or None, 30)
        assert metric(a, "helmops_leader") == 1.0
        cluster.apply(helmapp("one", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "one", ns)
        assert f"{ns}/one" in a.text() and f"{ns}/one" not in b.text()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        killed = time.monotonic()
        # created while no replica leads: the new leader must pick it up
        cluster.apply(helmapp("two", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_for("b takes over", lambda: " leads " in b.text(), 90)
        print(f"hand-over after SIGKILL: {time.monotonic() - killed:.1f}s (lease 6s)")
        wait_ready(cluster, "two", ns)
        assert f"{ns}/two" in b.text()
        assert wait_for("b is leader in metrics", lambda: metric(b, "helmops_leader") == 1.0 or None, 30)
        # once leading, the same port serves kopf's liveness endpoint (the standby server handed it over)
        probe = wait_for(
            "leader /healthz", lambda: (r := _try_http(b, b.health_port, "/healthz")) and "workers" in r[1] and r, 30
        )
        assert probe[0] == 200
    finally:
        stop_running(a, b)


def test_a_leader_that_loses_the_lease_stops_acting(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], chart_repo: Any, workdir: Path
) -> None:
    """Another holder takes the Lease (as after a partition): within the renew deadline the controller stops
    taking work, starts no helm action, and exits 1 to be restarted as a standby."""
    ns = make_ns(cluster, "d2ll")
    system = make_ns(cluster, "d2llsys")
    env = election_env(system)
    a = electing(management_cluster, helm_log[0], workdir, "d2ll-*", env)
    a.start()
    try:
        wait_for("a leads", lambda: " leads " in a.text())
        cluster.apply(helmapp("one", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        wait_ready(cluster, "one", ns)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        steal = {"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now,
                          "leaseDurationSeconds": 3600}}  # fmt: skip
        cluster.kubectl("patch", "lease", "helmops-leader-election", "-n", system, "--type", "merge",
                        "-p", json.dumps(steal))  # fmt: skip
        assert a.proc is not None
        wait_for("a exits", lambda: a.proc is not None and a.proc.poll() is not None, 60)
        assert a.proc.returncode == 1, a.text()[-3000:]
        text = a.text()
        assert "lost the lease" in text
        after = text.split("lost the lease", 1)[1]
        assert "reconcile " not in after  # no reconcile (so no helm action) started after the loss
        lease = json.loads(cluster.kubectl("get", "lease", "helmops-leader-election", "-n", system, "-o", "json"))
        assert lease["spec"]["holderIdentity"] == "intruder"  # not released: it was not ours any more
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()


@pytest.mark.parametrize("keep", [False, True], ids=["drop-failed", "keepFailHistory"])
def test_failed_drift_correction_history(
    cluster: Cluster, day2: Controller, chart_repo: Any, helm_log: tuple[Path, HelmLog], keep: bool
) -> None:
    """An immutable ConfigMap whose data was changed cannot be rolled back: the attempt fails. Its failed
    revision stays in Helm's history only with keepFailHistory; otherwise the history reads as before."""
    ns = make_ns(cluster, "d2")
    app = helmapp("imm", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"})
    app["spec"]["correctDrift"] = {"enabled": True, "keepFailHistory": keep}
    cluster.apply(app)
    wait_ready(cluster, "imm", ns)
    target = f"{ns}-target"
    before = [(int(s["version"]), s["status"]) for s in cluster.release_secrets("imm", target)]
    cluster.kubectl("patch", "configmap", "imm-hello", "-n", target, "--type", "merge",
                    "-p", json.dumps({"immutable": True, "data": {"message": "edited"}}))  # fmt: skip
    wait_for("DriftCorrectionFailed", lambda: "DriftCorrectionFailed" in cluster.event_reasons("imm", ns), 90)

    def history() -> list[tuple[int, str]]:
        return [(int(s["version"]), s["status"]) for s in cluster.release_secrets("imm", target)]

    if keep:
        got = wait_for("a failed revision kept", lambda: (h := history()) and any(st == "failed" for _, st in h) and h)
        assert got[0][0] == before[0][0] and got[-1][1] == "failed"  # helm's own record of the attempt
    else:
        # between attempts (retried with backoff) the history is exactly what it was before the drift
        wait_for("history as before", lambda: history() == before, 60)
    assert (cluster.configmap("imm-hello", target) or {}).get("message") == "edited"
    assert display_state(cluster, "imm", ns) in ("Modified", "")
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "imm", "-n", ns, "--wait=false")
