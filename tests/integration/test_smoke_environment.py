"""The test environment is real: API server, etcd, helm, docker-registry and chart repo all answer."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.chartrepo import ChartRepo
from support.charts import ChartFactory
from support.controlplane import ControlPlane
from support.registry import Registry
from support.tools import Tools

pytestmark = pytest.mark.integration


def helm(tools: Tools, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], env=env, capture_output=True, text=True, check=check)


def test_api_server_is_real(management_cluster: ControlPlane) -> None:
    version = management_cluster.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"].startswith("v1.32")  # type: ignore[index]
    management_cluster.kubectl("create", "namespace", "smoke")
    ns = management_cluster.kubectl_json("get", "namespace", "smoke")
    assert ns["status"] == {"phase": "Active"}


def test_two_control_planes_are_independent(
    management_cluster: ControlPlane, downstream_cluster: ControlPlane
) -> None:
    management_cluster.kubectl("create", "configmap", "only-here", "-n", "default")
    assert downstream_cluster.kubectl("get", "configmap", "only-here", "-n", "default", check=False).returncode != 0


def test_helm_installs_from_http_repo(
    tools: Tools, helm_env: dict[str, str], management_cluster: ControlPlane, chart_repo: ChartRepo,
    charts: ChartFactory,
) -> None:
    chart_repo.publish(charts.package("hello", "0.1.0"))
    index = chart_repo.dir / "index.yaml"
    assert "hello" in index.read_text()
    helm(tools, helm_env, "upgrade", "--install", "smoke-hello", "hello", "--repo", chart_repo.url,
         "--version", "0.1.0", "--namespace", "smoke-http", "--create-namespace", "--kubeconfig",
         str(management_cluster.kubeconfig), "--set", "message=from-repo")
    cm = management_cluster.kubectl_json("get", "configmap", "smoke-hello-hello", "-n", "smoke-http")
    assert cm["data"]["message"] == "from-repo"  # type: ignore[index]
    assert any(line.startswith("GET /index.yaml 200") for line in chart_repo.requests())


def test_oci_push_and_pull_by_tag_and_digest(
    tools: Tools, helm_env: dict[str, str], oci_registry: Registry, charts: ChartFactory, tmp_path: Path
) -> None:
    ref = charts.push_oci(charts.package("hello", "0.2.0"), oci_registry)
    (tmp_path / "tag").mkdir()
    (tmp_path / "digest").mkdir()
    out = helm(tools, helm_env, "pull", f"{ref}/hello", "--version", "0.2.0", "--plain-http", "-d",
               str(tmp_path / "tag"))
    assert (tmp_path / "tag" / "hello-0.2.0.tgz").exists()
    digest = next(w for w in (out.stdout + out.stderr).split() if w.startswith("sha256:"))
    helm(tools, helm_env, "pull", f"{ref}/hello@{digest}", "--plain-http", "-d", str(tmp_path / "digest"))
    assert list((tmp_path / "digest").glob("*.tgz"))
    with urllib.request.urlopen(f"{oci_registry.url}/v2/charts/hello/tags/list") as r:
        assert "0.2.0" in json.load(r)["tags"]


def test_basic_auth_failures_are_real(
    tools: Tools, helm_env: dict[str, str], oci_registry_auth: Registry, chart_repo_auth: ChartRepo,
    charts: ChartFactory,
) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{chart_repo_auth.url}index.yaml")
    assert err.value.code == 401
    bad = helm(tools, helm_env, "show", "chart", "hello", "--repo", chart_repo_auth.url, "--username", "helmops",
               "--password", "wrong", check=False)
    assert bad.returncode != 0 and "401" in bad.stderr
    chart_repo_auth.publish(charts.package("hello", "0.1.0"))
    good = helm(tools, helm_env, "show", "chart", "hello", "--repo", chart_repo_auth.url, "--username",
                chart_repo_auth.username, "--password", chart_repo_auth.password)
    assert "name: hello" in good.stdout
    tgz = charts.package("hello", "0.3.0")
    denied = helm(tools, helm_env, "push", str(tgz), f"oci://{oci_registry_auth.host}/charts", "--plain-http",
                  check=False)
    assert denied.returncode != 0
    charts.push_oci(tgz, oci_registry_auth)  # logs in with the right password first


def test_tls_failures_are_real(
    tools: Tools, helm_env: dict[str, str], oci_registry_tls: Registry, chart_repo_tls: ChartRepo,
    charts: ChartFactory,
) -> None:
    chart_repo_tls.publish(charts.package("hello", "0.1.0"))
    untrusted = helm(tools, helm_env, "show", "chart", "hello", "--repo", chart_repo_tls.url, check=False)
    assert untrusted.returncode != 0 and "x509" in untrusted.stderr
    trusted = helm(tools, helm_env, "show", "chart", "hello", "--repo", chart_repo_tls.url, "--ca-file",
                   str(chart_repo_tls.ca_file))
    assert "name: hello" in trusted.stdout
    charts.push_oci(charts.package("hello", "0.4.0"), oci_registry_tls)
    tags_url = f"{oci_registry_tls.url}/v2/charts/hello/tags/list"
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(tags_url)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    ctx = ssl.create_default_context(cafile=str(oci_registry_tls.ca_file))
    with urllib.request.urlopen(tags_url, context=ctx) as r:
        assert "0.4.0" in json.load(r)["tags"]
