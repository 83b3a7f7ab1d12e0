"""Hostile object shapes a tenant can store through the real API server, against one ``helmops run`` process.

The tenant creates, in its own namespace: a HelmApp whose values are nested about as deep as the API server
accepts (before helmops.kubeio this ended kopf's watcher and the process, again on every restart), a Fleet
Cluster whose ``templateValues`` are nested as deep plus a HelmApp targeting it, a HelmApp whose release
namespace is no valid namespace name, and one whose annotations fill the API server's 256 KiB annotation
limit (the controller's own annotation writes would fail with 422). Each must get Accepted=False with a
message naming the field (and the Cluster), a Warning Event and a log line, never a traceback; the process
must keep its PID for the whole module; a healthy HelmApp in another namespace must reach Ready.

The deep objects are POSTed as raw JSON (``kubectl create --raw``), and their status is read with a
jsonpath, so that neither kubectl's YAML path nor this test's own ``json`` module has to hold them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import (
    REPO_ROOT,
    Cluster,
    Controller,
    HelmLog,
    _try_http,
    helmapp,
    make_ns,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.integration
cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published

#: Total nesting depths to try, deepest first: the API server's JSON decoder stops at 10000 levels.
DEPTHS = (9_990, 9_000, 5_000, 2_500)
#: Python's recursion limit is 1000: anything deeper broke the controller before helmops.kubeio.
MIN_DEPTH = 2_000
#: The API server's limit on the total size of an object's annotations (keys and values).
ANNOTATIONS_LIMIT = 256 * 1024


@dataclass
class Env:
    ns: str
    good_ns: str
    crowd_ns: str
    ctl: Controller
    pid: int
    depths: dict[str, int]


def _deep(levels: int) -> str:
    """``levels`` nested lists as JSON text (2 bytes a level)."""
    return "[" * levels + "]" * levels


def _create_raw(c: Cluster, path: str, head: str, tail: str, workdir: Path, name: str) -> int:
    """POST ``head + deep + tail`` at the deepest of DEPTHS the API server accepts; the total depth used."""
    errors = []
    wrapper = head.count("{") + head.count("[") - head.count("}") - head.count("]")
    for total in DEPTHS:
        body = head + _deep(total - wrapper) + tail
        json_file = workdir / f"{name}.json"
        json_file.write_text(body)
        out = c.cp.kubectl("create", "--raw", path, "-f", str(json_file), check=False)
        if out.returncode == 0:
            return total
        errors.append(f"{total}: {out.stderr.strip()[:300]}")
    raise AssertionError(f"the API server refused {name} at every depth: {errors}")


def _filler(total: int) -> dict[str, str]:
    """Annotations of exactly ``total`` bytes (keys plus values)."""
    out, left, i = {}, total, 0
    while left > 0:
        key = f"tenant.example.com/filler-{i}"
        out[key] = "x" * max(0, min(60_000, left - len(key)))
        left -= len(key) + len(out[key])
        i += 1
    assert sum(len(k) + len(v) for k, v in out.items()) == total
    return out


def _jsonpath(c: Cluster, kind: str, name: str, ns: str, path: str) -> Any:
    out = c.cp.kubectl("get", kind, name, "-n", ns, "-o", f"jsonpath={path}", check=False)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def _condition(c: Cluster, name: str, ns: str, ctype: str) -> dict[str, Any]:
    conds = _jsonpath(c, "helmapps.fleet.cattle.io", name, ns, "{.status.conditions}") or []
    return next((dict(x) for x in conds if x.get("type") == ctype), {})


def _alive(env: Env) -> None:
    proc = env.ctl.proc
    assert proc is not None and proc.pid == env.pid and proc.poll() is None, env.ctl.text()[-5000:]


@pytest.fixture(scope="module")
def env(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path, chart_repo: Any,
    published: dict[str, Path],
) -> Iterator[Env]:  # fmt: skip
    for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):  # Cluster and ClusterGroup too
        cluster.kubectl("apply", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/clusters.fleet.cattle.io", "--timeout=60s")
    ns, good_ns, crowd_ns = make_ns(cluster, "sp-evil"), make_ns(cluster, "sp-good"), make_ns(cluster, "sp-crowd")
    for target in (f"{ns}-t", f"{ns}-target", f"{good_ns}-target", f"{crowd_ns}-target"):
        cluster.ensure_namespace(target)
    api = f"/apis/fleet.cattle.io/v1alpha1/namespaces/{ns}"
    meta = '"apiVersion":"fleet.cattle.io/v1alpha1","kind":"{kind}","metadata":{{"name":"{name}","namespace":"{ns}"}}'
    chart = f'"repo":"{chart_repo.url}","chart":"hello","version":"0.1.0"'
    depths: dict[str, int] = {}
    # the hostile objects exist before the controller starts: its first list must survive them too
    depths["helmapp"] = _create_raw(
        cluster, f"{api}/helmapps",
        "{" + meta.format(kind="HelmApp", name="deep-values", ns=ns)
        + f',"spec":{{"defaultNamespace":"{ns}-t","helm":{{{chart},"values":{{"deep":',
        "}}}}", workdir, "deep-values",
    )  # fmt: skip
    depths["cluster"] = _create_raw(
        cluster, f"{api}/clusters",
        "{" + meta.format(kind="Cluster", name="local", ns=ns) + ',"spec":{"templateValues":{"deep":',
        "}}}", workdir, "deep-cluster",
    )  # fmt: skip
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("sp-*",)).start()
    assert ctl.proc is not None
    env = Env(ns, good_ns, crowd_ns, ctl, ctl.proc.pid, depths)
    try:
        targeting = helmapp("on-deep-cluster", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
        targeting["spec"]["targets"] = [{"clusterName": "local"}]
        cluster.apply(targeting)
        bad_ns = helmapp("bad-namespace", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
        bad_ns["spec"]["namespace"] = "Not_A_Namespace"
        cluster.apply(bad_ns)
        long_ns = helmapp("long-target-namespace", ns, repo=chart_repo.url, chart="hello", version="0.1.0")
        long_ns["spec"]["targets"] = [{"clusterName": "local", "namespace": "n" * 64}]
        cluster.apply(long_ns)
        # annotations 40 bytes short of the API server's limit, on a HelmApp with targets (so the controller
        # records its deployed clusters in an annotation): in a namespace without a Cluster object
        crowded = helmapp("crowded-annotations", crowd_ns, repo=chart_repo.url, chart="hello", version="0.1.0")
        crowded["spec"]["targets"] = [{"clusterName": "local"}]
        crowded["metadata"]["annotations"] = _filler(ANNOTATIONS_LIMIT - 40)
        cluster.kubectl("create", "-f", "-", input=json.dumps(crowded))  # apply would copy it to last-applied
        cluster.apply(helmapp("healthy", good_ns, repo=chart_repo.url, chart="hello", version="0.1.0"))
        yield env
    finally:
        ctl.stop()


def test_api_server_accepted_the_deep_objects(env: Env) -> None:
    print(f"total nesting depth accepted by the API server: {env.depths}")
    assert min(env.depths.values()) >= MIN_DEPTH


def test_healthy_helmapp_is_ready_while_hostile_objects_exist(cluster: Cluster, env: Env) -> None:
    wait_ready(cluster, "healthy", env.good_ns, timeout=120)
    _alive(env)


def _refused(
    cluster: Cluster, env: Env, name: str, needles: tuple[str, ...], reasons: set[str], ns: str = ""
) -> str:
    ns = ns or env.ns

    def failed() -> str | None:
        cond = _condition(cluster, name, ns, "Accepted")
        msg = str(cond.get("message") or "")
        return msg if cond.get("status") == "False" and all(n in msg for n in needles) else None

    message = str(wait_for(f"Accepted=False on {name} naming {needles}", failed, 120))
    warnings = wait_for(
        f"Warning Event on {name}",
        lambda: [e for e in cluster.events(name, ns) if e.get("type") == "Warning" and e["reason"] in reasons],
    )
    assert any(needles[0] in e["message"] for e in warnings), warnings
    _alive(env)
    return message


def test_deep_helmapp_gets_a_condition_and_an_event(cluster: Cluster, env: Env) -> None:
    _refused(cluster, env, "deep-values", ("spec.helm.values", "nested deeper than 64 levels"), {"InvalidSpec"})
    line = re.compile(rf"{re.escape(env.ns)}/deep-values\b.*nested deeper than")
    wait_for("a log line naming the deep HelmApp", lambda: line.search(env.ctl.text()))


def test_deep_cluster_gets_a_condition_on_the_helmapp_naming_it(cluster: Cluster, env: Env) -> None:
    message = _refused(
        cluster, env, "on-deep-cluster", (f"Cluster local in namespace {env.ns}", "nested deeper than"), {"NotAccepted"}
    )
    assert "spec.templateValues" in message
    line = re.compile(rf"{re.escape(env.ns)}/on-deep-cluster\b.*Cluster local in namespace")
    wait_for("a log line naming the HelmApp and the Cluster", lambda: line.search(env.ctl.text()))


@pytest.mark.parametrize(
    ("name", "field"),
    [("bad-namespace", "spec.namespace"), ("long-target-namespace", "spec.targets[0].namespace")],
)
def test_invalid_release_namespace_gets_a_condition(cluster: Cluster, env: Env, name: str, field: str) -> None:
    _refused(cluster, env, name, (field, "not a valid namespace name"), {"InvalidSpec"})
    assert cluster.release_secrets(name, "Not_A_Namespace".lower()) == []


def test_oversized_annotations_get_a_condition(cluster: Cluster, env: Env) -> None:
    _refused(
        cluster, env, "crowded-annotations", ("metadata.annotations", "no room"), {"InvalidSpec"}, env.crowd_ns
    )
    assert cluster.release_status("crowded-annotations", f"{env.crowd_ns}-target") is None


def test_refusals_are_retried_with_backoff_not_in_a_hot_loop(cluster: Cluster, env: Env) -> None:
    _refused(cluster, env, "bad-namespace", ("spec.namespace",), {"InvalidSpec"})
    before = env.ctl.text().count(f"{env.ns}/bad-namespace")
    time.sleep(10)
    after = env.ctl.text().count(f"{env.ns}/bad-namespace")
    # the test controller's backoff: 1 s base, 5 s cap -> a handful of attempts in 10 s, not hundreds
    assert after - before <= 12, env.ctl.text()[-3000:]


def test_deep_objects_can_be_deleted(cluster: Cluster, env: Env) -> None:
    """The finalizer path reads the (cut) object too: deletion must finish, not loop on an error."""
    cluster.kubectl("delete", "clusters.fleet.cattle.io", "local", "-n", env.ns, "--wait=false")
    cluster.kubectl("delete", "helmapps.fleet.cattle.io", "deep-values", "-n", env.ns, "--wait=false")

    def gone() -> bool:
        out = cluster.cp.kubectl("get", "helmapps.fleet.cattle.io", "deep-values", "-n", env.ns, check=False)
        return out.returncode != 0 and "NotFound" in out.stderr

    wait_for("the deep HelmApp deleted (finalizer removed by the controller)", gone, 90)
    _alive(env)


def test_controller_never_restarted_and_logged_no_traceback(cluster: Cluster, env: Env) -> None:
    wait_ready(cluster, "healthy", env.good_ns, timeout=60)
    _alive(env)
    status, body = wait_for("healthz", lambda: _try_http(env.ctl, env.ctl.health_port, "/healthz"))
    assert status == 200, body
    text = env.ctl.text()
    assert "Traceback" not in text and "RecursionError" not in text, text[-5000:]
