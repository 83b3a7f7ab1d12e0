"""The persistent chart cache against the real HTTP chart repository and OCI registry (issue 18, item 3).

A fetcher started afresh on the same directory — what a restarted controller is — downloads nothing it
already holds (counted twice: ``ChartSources.stats["chart_downloads"]`` and the servers' own request logs);
a corrupted entry is discarded and downloaded again; two fetchers sharing the directory at once (two
processes during a rolling update) both get a verified chart and leave no partial file; and ``helmops run``
restarted on the same directory upgrades HTTP and OCI HelmApps without downloading their charts again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.request
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest

from helmops.sources import ChartRequest, ChartSources, RepoAuth
from support.chartrepo import ChartRepo
from support.charts import ChartFactory
from support.registry import Registry
from support.tools import Tools

pytestmark = pytest.mark.integration

PLAIN = RepoAuth(plain_http=True)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> e2e.Cluster:
    c = e2e.Cluster(management_cluster)
    for f in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        c.kubectl("apply", "-f", str(f))
    c.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io", "--timeout=60s")
    return c


def _tgz_gets(repo: ChartRepo, name: str) -> int:
    time.sleep(0.3)  # the repo logs a request just after answering it
    return sum(1 for line in repo.requests() if line.startswith("GET") and name in line)


def _blob_gets(registry: Registry, repo_path: str) -> int:
    time.sleep(0.3)
    return sum(
        1 for line in registry.requests() if line.startswith("GET") and f"{repo_path}/" in line and "/blobs/" in line
    )


async def _fetch(cache: Path, req: ChartRequest, auth: RepoAuth | None = None) -> tuple[str, Path, int]:
    async with ChartSources(cache) as sources:
        got = await sources.fetch(req, auth)
        return got.digest, got.path, sources.stats["chart_downloads"]


async def test_http_restart_downloads_nothing_and_a_corrupt_entry_is_fetched_again(
    chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path
) -> None:
    chart_repo.publish(charts.package("hello", "131.0.0"))
    req = ChartRequest(repo=chart_repo.url, chart="hello", version="131.0.0")
    cache = tmp_path / "cache"
    digest, path, downloads = await _fetch(cache, req)
    assert downloads == 1 and _tgz_gets(chart_repo, "hello-131.0.0.tgz") == 1
    # the restart: a new fetcher on the same directory
    again, again_path, downloads = await _fetch(cache, req)
    assert (again, again_path, downloads) == (digest, path, 0)
    assert _tgz_gets(chart_repo, "hello-131.0.0.tgz") == 1
    # a truncated entry (a crash of something else, a bad disk) is discarded and downloaded again
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    healed, healed_path, downloads = await _fetch(cache, req)
    assert healed == digest and downloads == 1 and _tgz_gets(chart_repo, "hello-131.0.0.tgz") == 2
    assert hashlib.sha256(healed_path.read_bytes()).hexdigest() == digest.split(":", 1)[1]


async def test_oci_restart_downloads_nothing(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = charts.push_oci(charts.package("hello", "132.0.0"), oci_registry, repo_path="cache-persist")
    req = ChartRequest(repo="", chart=f"{ref}/hello", version="132.0.0")
    cache = tmp_path / "cache"
    digest, path, downloads = await _fetch(cache, req, PLAIN)
    blobs = _blob_gets(oci_registry, "cache-persist")
    assert downloads == 1 and blobs >= 1
    again, again_path, downloads = await _fetch(cache, req, PLAIN)
    assert (again, again_path, downloads) == (digest, path, 0)
    assert _blob_gets(oci_registry, "cache-persist") == blobs  # no blob fetched again (the manifest is)


async def test_two_fetchers_share_one_directory(
    chart_repo: ChartRepo, oci_registry: Registry, charts: ChartFactory, tmp_path: Path
) -> None:
    chart_repo.publish(charts.package("hello", "133.0.0"))
    ref = charts.push_oci(charts.package("hello", "133.1.0"), oci_registry, repo_path="cache-shared")
    http = ChartRequest(repo=chart_repo.url, chart="hello", version="133.0.0")
    oci = ChartRequest(repo="", chart=f"{ref}/hello", version="133.1.0")
    cache = tmp_path / "cache"
    results = await asyncio.gather(
        _fetch(cache, http), _fetch(cache, http), _fetch(cache, oci, PLAIN), _fetch(cache, oci, PLAIN)
    )
    for digest, path, _ in results[:2]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.split(":", 1)[1]
    assert results[0][1] == results[1][1] and results[2][1] == results[3][1]
    assert list((cache / "charts" / "tmp").iterdir()) == []


# --- the controller itself, restarted -----------------------------------------------------------------------
def _chart_misses(ctl: e2e.Controller) -> float:
    """helmops_chart_cache_total{cache="chart",result="miss"}: the controller's chart downloads."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("helmops_chart_cache_total{") and 'cache="chart"' in line and 'result="miss"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_restarted_controller_downloads_no_cached_chart(
    mgmt: e2e.Cluster, management_cluster: Any, chart_repo: ChartRepo, oci_registry: Registry,
    charts: ChartFactory, tools: Tools, tmp_path: Path,
) -> None:  # fmt: skip
    """HTTP and OCI HelmApps deployed by one controller; a second one on the same chart cache directory
    upgrades both (new values: helm needs the chart) without fetching an archive or a layer."""
    chart_repo.publish(charts.package("hello", "134.0.0"))
    ref = charts.push_oci(charts.package("hello", "134.1.0"), oci_registry, repo_path="cache-restart")
    cluster = mgmt
    ns = e2e.make_ns(cluster, "cachep")
    cluster.kubectl("create", "secret", "generic", "oci-plain", "-n", ns, "--from-literal=basicHTTP=true")
    shared = str(tmp_path / "chart-cache")
    http_app = e2e.helmapp("viahttp", ns, repo=chart_repo.url, chart="hello", version="134.0.0")
    oci_app = e2e.helmapp("viaoci", ns, repo="", chart=f"{ref}/hello", version="134.1.0")
    oci_app["spec"]["helmSecretName"] = "oci-plain"
    first = e2e.Controller(
        management_cluster, tools.helm, tmp_path, namespaces=("cachep-*",), HELMOPS_CHART_CACHE_DIR=shared
    ).start()
    try:
        cluster.apply(http_app)
        cluster.apply(oci_app)
        e2e.wait_ready(cluster, "viahttp", ns)
        e2e.wait_ready(cluster, "viaoci", ns)
        assert _chart_misses(first) == 2
    finally:
        assert first.stop() == 0
    tgz, blobs = _tgz_gets(chart_repo, "hello-134.0.0.tgz"), _blob_gets(oci_registry, "cache-restart")
    second = e2e.Controller(
        management_cluster, tools.helm, tmp_path, namespaces=("cachep-*",), HELMOPS_CHART_CACHE_DIR=shared
    ).start()
    try:
        for name in ("viahttp", "viaoci"):
            e2e.merge_patch(cluster, name, ns, {"spec": {"helm": {"values": {"message": "restarted"}}}})

        def upgraded() -> bool:
            got = [
                (cluster.configmap(f"{n}-hello", f"{ns}-target") or {}).get("message") for n in ("viahttp", "viaoci")
            ]
            return got == ["restarted", "restarted"]

        e2e.wait_for("both upgraded by the second controller", upgraded, 120)
        assert _chart_misses(second) == 0
    finally:
        assert second.stop() == 0
    assert _tgz_gets(chart_repo, "hello-134.0.0.tgz") == tgz and _blob_gets(oci_registry, "cache-restart") == blobs
