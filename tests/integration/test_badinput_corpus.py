"""Hostile and broken input (``tests/badinput/``) against one running controller.

Every corpus file is applied at once, next to a healthy HelmApp. Each file says what must happen in a
leading comment:

- ``# expect: rejected <text>`` — the API server refuses the apply, naming ``<text>`` (a field path);
- ``# expect: accepted-false <a|b>`` — stored, then ``Accepted=False`` whose message holds one of the
  alternatives (case-insensitive) and a Warning Event (``NotAccepted`` / ``InvalidSpec``);
- ``# expect: ready-false <a|b>`` — helm refuses: ``Ready=False`` with that text, Warning Event, no deployed
  release;
- ``# expect: ready-false-or-ready`` — either outcome, as long as it is reported;
- ``# expect: ready [message=<m>]`` — odd but valid input that must work;
- ``# expect: multicluster <text>`` — Cluster/kubeconfig input; checked only once multi-cluster targeting
  is in the controller, skipped before.

Placeholders ``@@NAME@@`` are filled in by this module (namespaces, repository URLs, canary secrets). After
the corpus, the controller must still run, answer /healthz, and the healthy HelmApp must be Ready. The
canaries (repository passwords, Secret-derived values, the kubeconfig token) are then searched for in the
controller's log (run at DEBUG), in every status, and in every Event: ``test_security_canaries_*`` below.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
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

from support.chartrepo import ChartRepo

pytestmark = pytest.mark.integration

# the e2e module's module-scoped fixtures, shared by name
cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published

CORPUS = REPO_ROOT / "tests" / "badinput"
FILES = sorted(CORPUS.glob("*.yaml"))

#: distinctive secret values: none may ever show up in a log, a status or an Event.
CANARIES = {
    name: f"canary-{name.lower().replace('_', '-')}-{secrets.token_hex(6)}"
    for name in (
        "CANARY_REPO_PASSWORD",
        "CANARY_ORIGIN_PASSWORD",
        "CANARY_VALUES_YAML",
        "CANARY_SECRET_KEY",
        "CANARY_SECRET_VALUE",
        "CANARY_LOOT",
        "CANARY_KUBECONFIG_TOKEN",
    )
}

#: sitecustomize for the controller process: its own logging at DEBUG, the most verbose it has.
DEBUG_LOGGING = """\
import logging

from helmops.runtime import logs

_configure = logs.configure


def _debug(*args, **kwargs):
    _configure(*args, **kwargs)
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("helmops").setLevel(logging.DEBUG)


logs.configure = _debug
"""


def multicluster_landed() -> bool:
    """Targeting to downstream Clusters is wired into the controller (not only the clusters package)."""
    return any("connections" in p.read_text() for p in (REPO_ROOT / "helmops" / "controller").glob("*.py"))


@dataclass
class Case:
    path: Path
    kind: str
    arg: str

    @property
    def name(self) -> str:
        return self.path.stem

    def alternatives(self) -> list[str]:
        return [a.strip().lower() for a in self.arg.split("|") if a.strip()]


def load_case(path: Path) -> Case:
    m = re.search(r"^# expect: (\S+) ?(.*)$", path.read_text(), re.M)
    assert m, f"{path.name}: no '# expect:' line"
    return Case(path, m.group(1), m.group(2).strip())


@dataclass
class Env:
    ns: str
    target: str
    other_ns: str
    subs: dict[str, str]
    ctl: Controller
    results: dict[str, subprocess.CompletedProcess[str]]
    origin: ChartRepo
    other_host: ChartRepo


def render(text: str, subs: dict[str, str]) -> str:
    for k, v in subs.items():
        text = text.replace(f"@@{k}@@", v)
    assert "@@" not in text, re.findall(r"@@\w+@@", text)
    return text


@pytest.fixture(scope="module")
def corpus(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],
    chart_repo: Any,
    chart_repo_auth: Any,
    published: dict[str, Path],
    workdir: Path,
    tools: Any,
    charts: Any,
) -> Iterator[Env]:
    for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):  # Cluster and ClusterGroup too
        cluster.kubectl("apply", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/clusters.fleet.cattle.io", "--timeout=60s")
    ns = make_ns(cluster, "bi")
    target, other_ns = f"{ns}-target", make_ns(cluster, "victim")
    cluster.ensure_namespace(target)
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    cluster.kubectl(
        "create", "secret", "generic", "loot", "-n", other_ns,
        f"--from-literal=values.yaml=message: {CANARIES['CANARY_LOOT']}",
    )  # fmt: skip
    # "origin" serves an index whose chart URL is on "other host"; both want the same credentials
    password = CANARIES["CANARY_ORIGIN_PASSWORD"]
    origin = ChartRepo(tools, auth=True, password=password).start()
    other = ChartRepo(tools, auth=True, password=password).start()
    # a chart nobody else serves: the content-addressed store must not already hold it
    tgz = charts.package("hello", "7.7.7")
    other.publish(tgz)
    shutil.copy2(tgz, origin.dir / tgz.name)
    subprocess.run([str(tools.helm), "repo", "index", str(origin.dir), "--url", other.url.rstrip("/")], check=True)
    (origin.dir / tgz.name).unlink()
    chart_repo_auth.publish(published["hello-0.1.0"])

    sitedir = workdir / "debug-logging"
    sitedir.mkdir(exist_ok=True)
    (sitedir / "sitecustomize.py").write_text(DEBUG_LOGGING)
    pythonpath = os.pathsep.join(p for p in (str(sitedir), os.environ.get("PYTHONPATH", "")) if p)
    ctl = Controller(
        management_cluster, helm_log[0], workdir, namespaces=("bi-*",), PYTHONPATH=pythonpath, HELMOPS_LOG_LEVEL="debug"
    ).start()
    subs = {
        "NS": ns,
        "TARGET": target,
        "OTHERNS": other_ns,
        "REPO": chart_repo.url,
        "AUTHREPO": chart_repo_auth.url,
        "ORIGINREPO": origin.url,
        "ONE_MIB": base64.b64encode(os.urandom(768 * 1024)).decode(),  # 1 MiB of base64, incompressible
        **CANARIES,
    }
    env = Env(ns, target, other_ns, subs, ctl, {}, origin, other)
    try:
        cluster.apply(helmapp("healthy", ns, repo=chart_repo.url, chart="hello", version="0.1.0", target=target))
        landed = multicluster_landed()
        for path in FILES:
            case = load_case(path)
            if case.kind == "multicluster" and not landed:
                continue
            env.results[case.name] = cluster.cp.kubectl(
                "apply", "--server-side", "--force-conflicts", "-f", "-",
                input=render(path.read_text(), subs), check=False,
            )  # fmt: skip
        cluster.apply(helmapp("healthy-after", ns, repo=chart_repo.url, chart="hello", version="0.1.0", target=target))
        yield env
    finally:
        ctl.stop()
        origin.stop()
        other.stop()


def _conditions(c: Cluster, name: str, ns: str) -> dict[str, dict[str, Any]]:
    obj = c.helmapp(name, ns) or {}
    return {x["type"]: x for x in ((obj.get("status") or {}).get("conditions") or [])}


def _helmapp_name(path: Path) -> str:
    m = re.search(r"^kind: HelmApp\nmetadata:\n  name: (\S+)$", path.read_text(), re.M)
    assert m, path
    return m.group(1).strip('"')


def test_corpus_is_big_enough() -> None:
    kinds = [load_case(p).kind for p in FILES]
    assert len(FILES) >= 30 and kinds.count("rejected") >= 5 and kinds.count("accepted-false") >= 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_input(cluster: Cluster, corpus: Env, path: Path) -> None:
    case = load_case(path)
    name, ns = _helmapp_name(path), corpus.ns
    if case.kind == "multicluster" and case.name not in corpus.results:
        pytest.skip("multi-cluster targeting has not landed in the controller: Cluster kubeconfigs are unused")
    res = corpus.results[case.name]
    if case.kind == "rejected":
        assert res.returncode != 0, f"the API server accepted {path.name}"
        assert case.arg in res.stderr, res.stderr
        assert cluster.helmapp(name, ns) is None
        return
    assert res.returncode == 0, res.stderr
    if case.kind in ("accepted-false", "ready-false"):
        ctype = "Accepted" if case.kind == "accepted-false" else "Ready"

        def failed() -> dict[str, Any] | None:
            cond = _conditions(cluster, name, ns).get(ctype) or {}
            msg = str(cond.get("message") or "").lower()
            return cond if cond.get("status") == "False" and any(a in msg for a in case.alternatives()) else None

        cond = wait_for(f"{ctype}=False on {name} ({case.arg})", failed, 120)
        assert f"cluster local in namespace {ns}: " in cond["message"]
        warnings = wait_for(
            f"Warning Event on {name}",
            lambda: [e for e in cluster.events(name, ns) if e.get("type") == "Warning"],
        )
        assert {e["reason"] for e in warnings} & {"NotAccepted", "InvalidSpec", "InstallFailed", "UpgradeFailed"}
        assert cluster.release_status(name.replace(".", "-"), corpus.target) in (None, "failed")
        if case.name == "chart-url-on-other-host":
            reqs = corpus.other_host.requests()
            assert any(r.startswith("GET /hello-7.7.7.tgz 401") for r in reqs), reqs
            assert not any(" 200" in r for r in reqs), reqs  # the credentials did not follow
            assert any(r.startswith("GET /index.yaml 200") for r in corpus.origin.requests())
    elif case.kind == "ready-false-or-ready":

        def reported() -> dict[str, Any] | None:
            cond = _conditions(cluster, name, ns).get("Ready") or {}
            return cond if cond.get("status") == "True" or cond.get("message") else None

        cond = wait_for(f"Ready reported on {name}", reported, 180)
        print(f"{name}: Ready={cond['status']} {str(cond.get('message'))[:300]}")
    elif case.kind == "ready":
        obj = wait_ready(cluster, name, ns)
        release = (obj.get("spec", {}).get("helm") or {}).get("releaseName")
        if case.arg.startswith("message="):
            assert (cluster.configmap(f"{release or name}-hello", corpus.target) or {}).get("message") == case.arg[8:]
    elif case.kind == "multicluster":

        def refused() -> str | None:
            texts = [str(c.get("message") or "") for c in _conditions(cluster, name, ns).values()]
            texts += [str(e.get("message") or "") for e in cluster.events(name, ns)]
            return next((t for t in texts if any(a in t.lower() for a in case.alternatives())), None)

        wait_for(f"{name} refused ({case.arg})", refused, 120)
        assert not Path("/tmp/helmops-exec-pwned").exists()
    else:
        raise AssertionError(f"{path.name}: unknown expectation {case.kind}")


def test_controller_survives_and_others_are_unaffected(cluster: Cluster, corpus: Env) -> None:
    for name in ("healthy", "healthy-after"):
        wait_ready(cluster, name, corpus.ns)
    assert corpus.ctl.proc is not None and corpus.ctl.proc.poll() is None, corpus.ctl.text()[-3000:]
    status, body = wait_for("healthz", lambda: _try_http(corpus.ctl, corpus.ctl.health_port, "/healthz"))
    assert status == 200, body
    assert "Traceback" not in corpus.ctl.text(), corpus.ctl.text()[-5000:]


def _everything_visible(cluster: Cluster, corpus: Env) -> dict[str, str]:
    """Where a secret could leak to: the controller's log, every HelmApp (status included), every Event."""
    where = {"controller log": corpus.ctl.text()}
    for ns in (corpus.ns, corpus.target):
        where[f"helmapps in {ns}"] = cluster.kubectl("get", "helmapps.fleet.cattle.io", "-n", ns, "-o", "json")
        where[f"events in {ns}"] = cluster.kubectl("get", "events", "-n", ns, "-o", "json")
    return where


def test_security_canaries_never_leak(cluster: Cluster, corpus: Env, management_cluster: Any) -> None:
    """After the corpus has run: no canary (nor its base64) anywhere a user or a log collector can see."""
    # make sure the canary-bearing cases have been processed before looking
    for name in (
        "wrong-repo-password",
        "chart-url-on-other-host",
        "valuesfrom-secret-bad-yaml",
        "cross-namespace-secret",
        "secret-value-echoed-by-apiserver",
    ):
        wait_for(f"{name} reported", lambda name=name: _conditions(cluster, name, corpus.ns).get("Ready"), 120)
    secrets_ = {**CANARIES, "management token": management_cluster.token}
    debug_lines = sum(1 for line in corpus.ctl.text().splitlines() if " DEBUG " in line)
    print(f"controller log: {len(corpus.ctl.text().splitlines())} lines, {debug_lines} at DEBUG")
    leaks = []
    for where, text in _everything_visible(cluster, corpus).items():
        for label, value in secrets_.items():
            for form in (value, base64.b64encode(value.encode()).decode()):
                if form in text:
                    leaks.append(f"{label} in {where}")
    assert not leaks, leaks


def test_security_cross_namespace_secret_never_reaches_a_release(cluster: Cluster, corpus: Env) -> None:
    """The other namespace's Secret was never copied into a release (helm storage in the release namespace)."""
    out = cluster.kubectl("get", "secrets", "-n", corpus.target, "-l", "owner=helm", "-o", "json")
    stored = json.dumps(json.loads(out)["items"])
    assert CANARIES["CANARY_LOOT"] not in stored
