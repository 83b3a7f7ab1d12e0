"""``helmops render`` against a real HTTP chart repo (plain and basic auth), a real OCI registry and the real
helm binary, run in-process through ``helmops.cli.main.main``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.cli.main import main

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def helmapp(tmp_path: Path, helm: dict[str, Any], *, name: str = "web", **spec: Any) -> str:
    body = {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmApp",
        "metadata": {"name": name, "namespace": "fleet-default"},
        "spec": {"defaultNamespace": "web", "helm": helm, **spec},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def secret(tmp_path: Path, **data: str) -> str:
    path = tmp_path / "secret.yaml"
    path.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": data})
    )
    return str(path)


@pytest.fixture(scope="module")
def repo(charts: Any, chart_repo: Any, tools: Any) -> Any:
    for name, version in [("hello", "0.1.0"), ("hello", "0.2.0"), ("hello", "0.3.0-rc.1"), ("failing", "0.1.0")]:
        chart_repo.publish(charts.package(name, version))
    return chart_repo


def test_render_resolves_a_constraint_and_prints_manifests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any
) -> None:
    app = helmapp(tmp_path, {"repo": repo.url, "chart": "hello", "version": "^0.1 || ^0.2",
                             "values": {"message": "hi ${ .ClusterName }"}})  # fmt: skip
    code, out, err = run(capsys, "render", "-f", app)
    assert code == 0, err
    assert out.startswith("# helmops: cluster fleet-default/local (target default), release web/web, chart hello 0.2.0")
    docs = [d for d in yaml.safe_load_all(out) if d]
    (cm,) = docs
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "web-hello"
    assert cm["data"]["message"] == "hi local"


def test_render_json_per_cluster_with_clusters_from(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any
) -> None:
    app = helmapp(
        tmp_path,
        {"repo": repo.url, "chart": "hello", "version": "0.1.0", "values": {"message": "${ .ClusterLabels.env }"}},
        targets=[
            {"name": "canary", "clusterName": "eu-1", "helm": {"version": "0.2.0", "values": {"replicas": 2}}},
            {"name": "prod", "clusterGroup": "prod"},
        ],
    )
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        textwrap.dedent("""\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: ClusterGroup
        metadata: {name: prod, namespace: fleet-default}
        spec: {selector: {matchLabels: {env: prod}}}
        ---
        apiVersion: v1
        kind: List
        items:
        - apiVersion: fleet.cattle.io/v1alpha1
          kind: Cluster
          metadata: {name: eu-1, namespace: fleet-default, labels: {env: prod}}
        - apiVersion: fleet.cattle.io/v1alpha1
          kind: Cluster
          metadata: {name: us-1, namespace: fleet-default, labels: {env: prod}}
        - apiVersion: fleet.cattle.io/v1alpha1
          kind: Cluster
          metadata: {name: dev-1, namespace: fleet-default, labels: {env: dev}}
        """)
    )
    code, out, err = run(capsys, "render", "-f", app, "--clusters-from", str(clusters), "-o", "json")
    assert code == 0, err
    entries = {e["cluster"]: e for e in json.loads(out)["clusters"]}
    assert sorted(entries) == ["fleet-default/eu-1", "fleet-default/us-1"]
    eu, us = entries["fleet-default/eu-1"], entries["fleet-default/us-1"]
    assert (eu["target"], eu["version"], us["target"], us["version"]) == ("canary", "0.2.0", "prod", "0.1.0")
    assert eu["values"] == {"message": "prod", "replicas": 2}
    for e in (eu, us):
        assert e["digest"].startswith("sha256:") and e["valuesDigest"].startswith("sha256:")
        assert e["chart"] == "hello" and "error" not in e
        assert "kind: ConfigMap" in e["manifest"]
        assert e["sources"][0]["kind"] == "values"
    assert eu["digest"] != us["digest"]
    assert 'replicas: "2"' in eu["manifest"]


def test_render_errors_name_the_cluster_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any
) -> None:
    app = helmapp(tmp_path, {"repo": repo.url, "chart": "hello", "version": "^9"})
    code, out, err = run(capsys, "render", "-f", app, "-o", "json")
    (entry,) = json.loads(out)["clusters"]
    assert code == 1
    assert entry["error"].startswith("cluster local in namespace fleet-default: no chart version found for hello")
    assert "no chart version found" in err

    failing = helmapp(tmp_path, {"repo": repo.url, "chart": "failing", "version": "0.1.0"}, name="failing")
    code, out, err = run(capsys, "render", "-f", failing)
    assert code == 1 and out == ""
    assert "helm template" in err and "mustSet is required" in err


def test_render_values_only_contacts_no_chart_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any
) -> None:
    repo.reset_requests()
    app = helmapp(tmp_path, {"repo": repo.url, "chart": "hello", "version": "~0.1", "values": {"a": 1}})
    code, out, err = run(capsys, "render", "-f", app, "--values-only", "-o", "json")
    (entry,) = json.loads(out)["clusters"]
    assert code == 0, err
    assert entry["version"] == "unresolved" and entry["digest"] is None and entry["values"] == {"a": 1}
    assert "manifest" not in entry
    assert repo.requests() == []


def test_render_private_repo_with_helm_secret_never_prints_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, charts: Any, chart_repo_auth: Any
) -> None:
    chart_repo_auth.publish(charts.package("hello", "0.1.0"))
    app = helmapp(tmp_path, {"repo": chart_repo_auth.url, "chart": "hello", "version": "0.1.0"}, helmSecretName="creds")
    code, out, err = run(capsys, "render", "-f", app, "-o", "json")
    assert code == 1
    assert "401" in err and "warning: helmSecretName 'creds' not read" in err
    creds = secret(tmp_path, username=chart_repo_auth.username, password=chart_repo_auth.password)
    code, out, err = run(capsys, "render", "-f", app, "--helm-secret", creds, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["clusters"][0]["version"] == "0.1.0"
    wrong = secret(tmp_path, username=chart_repo_auth.username, password="wrong-password-123")
    code, out, err = run(capsys, "render", "-f", app, "--helm-secret", wrong, "-o", "json")
    assert code == 1
    for text in (out, err):
        assert chart_repo_auth.password not in text and "wrong-password-123" not in text


def test_render_oci_chart(capsys: pytest.CaptureFixture[str], tmp_path: Path, charts: Any, oci_registry: Any) -> None:
    ref = charts.push_oci(charts.package("hello", "1.4.0"), oci_registry, "cli")
    charts.push_oci(charts.package("hello", "1.5.0"), oci_registry, "cli")
    app = helmapp(tmp_path, {"repo": f"{ref}/hello", "version": "~1.4", "values": {"message": "oci"}})
    plain_http = secret(tmp_path, basicHTTP="true")
    code, out, err = run(capsys, "render", "-f", app, "--helm-secret", plain_http, "-o", "json")
    assert code == 0, err
    (entry,) = json.loads(out)["clusters"]
    assert (entry["chart"], entry["version"]) == ("hello", "1.4.0")
    assert entry["digest"].startswith("sha256:")
    assert 'message: "oci"' in entry["manifest"]


async def _controller_fingerprint(helmapp_obj: dict[str, Any], cache: Path) -> tuple[str, str, str]:
    """What the controller's own adapters (deps.py) compute for this HelmApp on the local cluster."""
    from helmops.api import release_name, release_namespace
    from helmops.desired.adapters import AssembleRenderer, SourcesFetcher, spec_checker
    from helmops.desired.release import build_release
    from helmops.sources import ChartSources

    checked = spec_checker().check(helmapp_obj)  # the controller's edge: parsed once
    assert checked.app is not None and not checked.problems
    app = checked.app
    name, ns = release_name(app.metadata.name, app.spec), release_namespace(app.spec)
    async with ChartSources(cache_dir=cache) as sources:
        chart = await SourcesFetcher(None, sources).fetch(app)  # type: ignore[arg-type]
    values = await AssembleRenderer(None).render(app, ns)
    desired = build_release(app, release_name=name, release_namespace=ns, chart=chart, values=values)
    return desired.fingerprint, chart.digest, values.digest


def test_render_fingerprint_is_the_controllers(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any) -> None:
    import asyncio

    helm = {"repo": repo.url, "chart": "hello", "version": "~0.1", "timeoutSeconds": 30,
            "values": {"message": "${ .ClusterName }/${ .ClusterNamespace }", "n": 1000000}}  # fmt: skip
    app = helmapp(tmp_path, helm, name="Fingerprint_App")
    code, out, err = run(capsys, "render", "-f", app, "-o", "json")
    assert code == 0, err
    (entry,) = json.loads(out)["clusters"]
    obj = yaml.safe_load(Path(app).read_text())
    cache = tmp_path / "controller-cache"
    cache.mkdir()
    fingerprint, chart_digest, values_digest = asyncio.run(_controller_fingerprint(obj, cache))
    assert (entry["fingerprint"], entry["digest"], entry["valuesDigest"]) == (fingerprint, chart_digest, values_digest)
    assert entry["values"]["message"] == "local/fleet-default"


def test_render_tarball_url(capsys: pytest.CaptureFixture[str], tmp_path: Path, repo: Any) -> None:
    app = helmapp(tmp_path, {"chart": f"{repo.url}hello-0.2.0.tgz", "values": {"message": "tgz"}})
    code, out, err = run(capsys, "render", "-f", app, "--values-only", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["clusters"][0]["version"] == "unresolved"
    code, out, err = run(capsys, "render", "-f", app, "-o", "json")
    (entry,) = json.loads(out)["clusters"]
    assert code == 0, err
    assert (entry["chart"], entry["version"]) == ("hello", "0.2.0") and 'message: "tgz"' in entry["manifest"]
