"""Safe promotion end to end: ``helmops run`` on the management control plane with the real helm, chart repo
and a downstream control plane; ``helmops plan``/``approve`` as the console script runs them.

Approval: a gated upgrade waits for the shown hash; a stale hash does nothing; a values change needs a new
approval; a gated cluster waits while an ungated one deploys; a Secret-derived canary never shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
APPROVAL = "helmops.cattle.io/require-approval"
SELECTOR = "helmops.cattle.io/approval-cluster-selector"
APPROVED = "helmops.cattle.io/approved-plan"
CANARY = "canary-9f1c2e7a-do-not-show"


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> e2e.Cluster:
    return e2e.fleet_crds(e2e.Cluster(management_cluster))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("promotion")


@pytest.fixture(scope="module")
def published(charts: Any, chart_repo: Any) -> None:
    for version in ("0.1.0", "0.2.0"):
        chart_repo.publish(charts.package("hello", version))


@pytest.fixture(scope="module")
def controller(
    mgmt: e2e.Cluster, management_cluster: Any, tools: Any, workdir: Path, published: None
) -> Iterator[e2e.Controller]:
    ctl = e2e.Controller(management_cluster, tools.helm, workdir, namespaces=("pr-*",)).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


@pytest.fixture
def ns(mgmt: e2e.Cluster) -> str:
    return e2e.make_ns(mgmt, "pr")


def helmops(cp: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "helmops.cli.main", *args, "--kubeconfig", str(cp.kubeconfig)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"helmops {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def plan_of(cp: Any, ns: str, name: str) -> dict[str, Any]:
    return dict(json.loads(helmops(cp, "plan", f"{ns}/{name}", "-o", "json").stdout))


def wait_plan(cp: Any, ns: str, name: str, other_than: str = "") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view = plan_of(cp, ns, name)
        return view if view["planHash"] and view["planHash"] != other_than and not view["approved"] else None

    return dict(e2e.wait_for(f"a plan for {ns}/{name}", check, 90))


def chart_version(c: e2e.Cluster, name: str, target: str) -> str | None:
    return (c.configmap(f"{name}-hello", target) or {}).get("chartVersion")


# --- tests -----------------------------------------------------------------------------------------------
def test_gated_upgrade_waits_for_the_shown_hash_and_values_changes_need_a_new_approval(
    mgmt: e2e.Cluster, management_cluster: Any, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    cp, target = management_cluster, f"{ns}-target"
    mgmt.apply(e2e.helmapp("web", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "one"}))
    e2e.wait_ready(mgmt, "web", ns)
    assert chart_version(mgmt, "web", target) == "0.1.0"

    # gate it, then ask for an upgrade: it waits with a plan
    mgmt.kubectl("annotate", "helmapps.fleet.cattle.io", "web", "-n", ns, f"{APPROVAL}=true")
    e2e.merge_patch(mgmt, "web", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    view = wait_plan(cp, ns, "web")
    first = view["planHash"]
    (entry,) = view["clusters"]
    assert entry["action"] == "upgrade" and entry["chart"] == "hello"
    assert (entry["from"], entry["to"]) == ("0.1.0", "0.2.0")
    assert any("configmap.v1" in o for o in entry["objects"]["changed"])
    text = helmops(cp, "plan", f"{ns}/web").stdout
    assert first in text and "0.1.0 -> 0.2.0" in text
    e2e.wait_for("AwaitingApproval event", lambda: "AwaitingApproval" in mgmt.event_reasons("web", ns))
    event = next(e for e in mgmt.events("web", ns) if e["reason"] == "AwaitingApproval")
    assert first in event["message"]
    e2e.wait_for("status says so", lambda: first in json.dumps((mgmt.helmapp("web", ns) or {}).get("status")))
    time.sleep(3)
    assert chart_version(mgmt, "web", target) == "0.1.0"

    # a stale (or made-up) hash does nothing: refused by the CLI, ignored by the controller when written by hand
    assert helmops(cp, "approve", f"{ns}/web", "--plan", "0123456789abcdef", check=False).returncode == 1
    mgmt.kubectl("annotate", "--overwrite", "helmapps.fleet.cattle.io", "web", "-n", ns, f"{APPROVED}=0123456789abcdef")
    time.sleep(4)
    assert chart_version(mgmt, "web", target) == "0.1.0"

    # a values change before approval: a new plan; the old hash approves nothing
    e2e.merge_patch(mgmt, "web", ns, {"spec": {"helm": {"values": {"message": "two"}}}})
    second = wait_plan(cp, ns, "web", other_than=first)["planHash"]
    assert "message" in plan_of(cp, ns, "web")["clusters"][0]["values"]["changed"]
    mgmt.kubectl("annotate", "--overwrite", "helmapps.fleet.cattle.io", "web", "-n", ns, f"{APPROVED}={first}")
    time.sleep(4)
    assert chart_version(mgmt, "web", target) == "0.1.0"

    # the shown hash runs it
    helmops(cp, "approve", f"{ns}/web", "--plan", second)
    e2e.wait_for("0.2.0 deployed", lambda: chart_version(mgmt, "web", target) == "0.2.0")
    assert (mgmt.configmap("web-hello", target) or {}).get("message") == "two"
    e2e.wait_ready(mgmt, "web", ns)

    # after approval, another values change waits for a new approval
    e2e.merge_patch(mgmt, "web", ns, {"spec": {"helm": {"values": {"message": "three"}}}})
    third = wait_plan(cp, ns, "web", other_than=second)["planHash"]
    time.sleep(3)
    assert (mgmt.configmap("web-hello", target) or {}).get("message") == "two"
    helmops(cp, "approve", f"{ns}/web", "--plan", third)
    e2e.wait_for("three deployed", lambda: (mgmt.configmap("web-hello", target) or {}).get("message") == "three")

    # deletion is not gated
    mgmt.kubectl("delete", "helmapps.fleet.cattle.io", "web", "-n", ns, "--wait=false")
    e2e.wait_for("HelmApp gone", lambda: mgmt.helmapp("web", ns) is None)
    assert mgmt.release_secrets("web", target) == []


def test_gated_cluster_waits_while_ungated_cluster_deploys(
    mgmt: e2e.Cluster,
    management_cluster: Any,
    downstream_cluster: Any,
    controller: e2e.Controller,
    chart_repo: Any,
    ns: str,
) -> None:
    cp, target = management_cluster, f"{ns}-target"
    down = e2e.Cluster(downstream_cluster)
    # the management plane as a Fleet Cluster is the local cluster: only "local" may name it (one identity)
    e2e.register_cluster(mgmt, ns, "local", management_cluster, {"env": "prod"})
    e2e.register_cluster(mgmt, ns, "dev", downstream_cluster, {"env": "dev"})
    obj = e2e.helmapp("split", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "m"})
    obj["spec"]["targets"] = [{"clusterSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}}]
    obj["metadata"]["annotations"] = {APPROVAL: "true", SELECTOR: json.dumps({"matchLabels": {"env": "prod"}})}
    mgmt.apply(obj)
    e2e.wait_for("dev deployed", lambda: chart_version(down, "split", target) == "0.1.0")
    view = wait_plan(cp, ns, "split")
    assert [c["cluster"] for c in view["clusters"]] == [f"{ns}/local"]
    assert view["clusters"][0]["action"] == "install" and view["clusters"][0]["from"] == ""
    time.sleep(3)
    assert mgmt.configmap("split-hello", target) is None
    helmops(cp, "approve", f"{ns}/split", "--plan", view["planHash"])
    e2e.wait_for("prod deployed", lambda: chart_version(mgmt, "split", target) == "0.1.0")


def test_secret_derived_values_never_show(
    mgmt: e2e.Cluster, management_cluster: Any, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    cp = management_cluster
    mgmt.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "stringData": {"values.yaml": yaml.safe_dump({"message": CANARY, "extra": {CANARY: "from the Secret"}})},
        }
    )
    obj = e2e.helmapp("canary", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
    obj["spec"]["helm"]["valuesFrom"] = [{"secretKeyRef": {"name": "creds", "namespace": ns, "key": "values.yaml"}}]
    obj["metadata"]["annotations"] = {APPROVAL: "true"}
    mgmt.apply(obj)
    view = wait_plan(cp, ns, "canary")
    e2e.wait_for("AwaitingApproval event", lambda: "AwaitingApproval" in mgmt.event_reasons("canary", ns))
    shown = [
        helmops(cp, "plan", f"{ns}/canary").stdout,
        helmops(cp, "plan", f"{ns}/canary", "-o", "json").stdout,
        json.dumps(mgmt.helmapp("canary", ns)),
        json.dumps(mgmt.events("canary", ns)),
        helmops(cp, "status", f"{ns}/canary", check=False).stdout,
        controller.text(),
    ]
    assert view["clusters"][0]["values"]["added"]  # keys are listed ...
    assert all(CANARY not in text for text in shown)  # ... the Secret's strings never are
    helmops(cp, "approve", f"{ns}/canary", "--plan", view["planHash"])
    e2e.wait_for("deployed", lambda: (mgmt.configmap("canary-hello", f"{ns}-target") or {}).get("message") == CANARY)
    assert CANARY not in controller.text() and CANARY not in json.dumps(mgmt.events("canary", ns))


WINDOWS = "helmops.cattle.io/windows"


def test_deny_window_holds_an_upgrade_that_starts_when_it_ends(
    mgmt: e2e.Cluster, management_cluster: Any, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    target = f"{ns}-target"
    mgmt.apply(e2e.helmapp("win", ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
    e2e.wait_ready(mgmt, "win", ns)
    # deny for the first 15 seconds of every half minute (cron with seconds: cronsim's 6-field form)
    deny = [{"kind": "deny", "schedule": "*/30 * * * * *", "duration": "15s", "timeZone": "Europe/Berlin"}]
    mgmt.kubectl("annotate", "helmapps.fleet.cattle.io", "win", "-n", ns, f"{WINDOWS}={json.dumps(deny)}")
    e2e.wait_for("the start of a deny window", lambda: 1 <= time.time() % 30 <= 3, timeout=40, interval=0.2)
    window_end = time.time() - time.time() % 30 + 15
    e2e.merge_patch(mgmt, "win", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    e2e.wait_for(
        "held by the window",
        lambda: "OutsideMaintenanceWindow" in mgmt.event_reasons("win", ns) and time.time() < window_end,
        timeout=12,
        interval=0.2,
    )
    message = json.dumps((mgmt.helmapp("win", ns) or {}).get("status"))
    assert "inside a deny window; next window opens" in message
    assert chart_version(mgmt, "win", target) == "0.1.0" and time.time() < window_end
    e2e.wait_for("0.2.0 deployed", lambda: chart_version(mgmt, "win", target) == "0.2.0", timeout=60, interval=0.2)
    assert time.time() >= window_end


def test_override_runs_one_plan_now(
    mgmt: e2e.Cluster, management_cluster: Any, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    cp, target = management_cluster, f"{ns}-target"
    obj = e2e.helmapp("ovr", ns, repo=chart_repo.url, chart="hello", version="0.1.0", values={"message": "a"})
    mgmt.apply(obj)
    e2e.wait_ready(mgmt, "ovr", ns)
    always = [{"kind": "deny", "schedule": "* * * * *", "duration": "2h"}]
    mgmt.kubectl("annotate", "helmapps.fleet.cattle.io", "ovr", "-n", ns, f"{WINDOWS}={json.dumps(always)}")
    e2e.merge_patch(mgmt, "ovr", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    view = wait_plan(cp, ns, "ovr")
    assert "OutsideMaintenanceWindow" in mgmt.event_reasons("ovr", ns)
    time.sleep(2)
    assert chart_version(mgmt, "ovr", target) == "0.1.0"
    out = helmops(cp, "approve", f"{ns}/ovr", "--plan", view["planHash"], "--override").stdout
    assert "outside maintenance windows" in out
    e2e.wait_for("0.2.0 deployed", lambda: chart_version(mgmt, "ovr", target) == "0.2.0")
    # one plan only: the next change waits for the window again
    e2e.merge_patch(mgmt, "ovr", ns, {"spec": {"helm": {"values": {"message": "b"}}}})
    wait_plan(cp, ns, "ovr", other_than=view["planHash"])
    time.sleep(3)
    assert (mgmt.configmap("ovr-hello", target) or {}).get("message") == "a"


PROMOTE_FROM, SOAK, PROMOTED = "helmops.cattle.io/promote-from", "helmops.cattle.io/soak", "helmops.cattle.io/promoted"


def spec_version(c: e2e.Cluster, name: str, ns: str) -> str:
    return str((((c.helmapp(name, ns) or {}).get("spec") or {}).get("helm") or {}).get("version") or "")


def ready_at(c: e2e.Cluster, name: str, ns: str, version: str) -> bool:
    obj = c.helmapp(name, ns) or {}
    st = obj.get("status") or {}
    conds = {x["type"]: x for x in st.get("conditions") or []}
    return st.get("version") == version and conds.get("Ready", {}).get("status") == "True"


def chain_app(name: str, ns: str, repo: str, source: str | None, soak: str) -> dict[str, Any]:
    obj = e2e.helmapp(name, ns, repo=repo, chart="hello", version="0.1.0", target=f"{ns}-{name}")
    if source:
        obj["metadata"]["annotations"] = {PROMOTE_FROM: source, SOAK: soak}
    return obj


def test_two_step_chain_promotes_only_after_the_soak(
    mgmt: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    soak = 8.0
    for name, source in (("dev", None), ("staging", "dev"), ("prod", "staging")):
        mgmt.apply(chain_app(name, ns, chart_repo.url, source, f"{soak:g}s"))
    for name in ("dev", "staging", "prod"):
        e2e.wait_ready(mgmt, name, ns)
    e2e.merge_patch(mgmt, "dev", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    e2e.wait_for("dev Ready at 0.2.0", lambda: ready_at(mgmt, "dev", ns, "0.2.0"), interval=0.2)
    dev_ready = time.time()
    assert spec_version(mgmt, "staging", ns) == "0.1.0"
    e2e.wait_for("staging promoted", lambda: spec_version(mgmt, "staging", ns) == "0.2.0", interval=0.2)
    assert time.time() - dev_ready >= soak - 1.5  # the controller saw dev Ready at most a moment before we did
    record = json.loads((mgmt.helmapp("staging", ns) or {})["metadata"]["annotations"][PROMOTED])
    assert record["version"] == "0.2.0" and record["from"] == f"{ns}/dev" and record["by"]
    promoted = [e for e in mgmt.events("staging", ns) if e["reason"] == "Promoted"]
    assert promoted and "0.1.0 -> 0.2.0" in promoted[0]["message"]
    e2e.wait_for("staging Ready at 0.2.0", lambda: ready_at(mgmt, "staging", ns, "0.2.0"), interval=0.2)
    staging_ready = time.time()
    assert spec_version(mgmt, "prod", ns) == "0.1.0"
    e2e.wait_for("prod promoted", lambda: spec_version(mgmt, "prod", ns) == "0.2.0", interval=0.2)
    assert time.time() - staging_ready >= soak - 1.5
    e2e.wait_for("prod deployed", lambda: chart_version(mgmt, "prod", f"{ns}-prod") == "0.2.0")


def test_no_promotion_when_the_source_turned_not_ready_during_the_soak(
    mgmt: e2e.Cluster, controller: e2e.Controller, chart_repo: Any, ns: str
) -> None:
    soak = 20.0
    mgmt.apply(chain_app("src", ns, chart_repo.url, None, ""))
    mgmt.apply(chain_app("dst", ns, chart_repo.url, "src", f"{soak:g}s"))
    e2e.wait_ready(mgmt, "src", ns)
    e2e.wait_ready(mgmt, "dst", ns)
    e2e.merge_patch(mgmt, "src", ns, {"spec": {"helm": {"version": "0.2.0"}}})
    e2e.wait_for("src Ready at 0.2.0", lambda: ready_at(mgmt, "src", ns, "0.2.0"), interval=0.2)
    first_ready = time.time()
    # break it during the soak: an invalid ConfigMap key makes the upgrade fail, so src is not Ready
    e2e.merge_patch(mgmt, "src", ns, {"spec": {"helm": {"values": {"extra": {"not a valid key!": "x"}}}}})
    e2e.wait_for("src NotReady", lambda: not ready_at(mgmt, "src", ns, "0.2.0"), interval=0.2)
    assert time.time() - first_ready < soak
    while time.time() < first_ready + soak + 6:
        assert spec_version(mgmt, "dst", ns) == "0.1.0"
        time.sleep(0.5)
    # fixed: a new soak starts from the new Ready run
    e2e.merge_patch(mgmt, "src", ns, {"spec": {"helm": {"values": None}}})
    e2e.wait_for("src Ready again", lambda: ready_at(mgmt, "src", ns, "0.2.0"), interval=0.2)
    again = time.time()
    e2e.wait_for("dst promoted", lambda: spec_version(mgmt, "dst", ns) == "0.2.0", timeout=60, interval=0.2)
    assert time.time() - again >= soak - 1.5
