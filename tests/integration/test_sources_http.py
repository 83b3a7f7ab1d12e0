"""Chart sources against a real HTTP chart repository (``helm repo index`` output, plain/basic-auth/TLS).

Fixture repositories are shared by the session, so each test publishes its own major version of ``hello``
and asks for it with a constraint nobody else uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest
import yaml

from helmops.sources import (
    AuthError,
    ChartNotFound,
    ChartRequest,
    ChartSources,
    RepoAuth,
    TLSError,
    VersionNotFound,
    auth_from_secret,
)
from support.chartrepo import ChartRepo
from support.charts import ChartFactory
from support.tools import Tools

pytestmark = pytest.mark.integration


def _publish(repo: ChartRepo, charts: ChartFactory, *versions: str) -> None:
    for v in versions:
        repo.publish(charts.package("hello", v))


def _lines(repo: ChartRepo, prefix: str, at_least: int = 1) -> list[str]:
    """The repo logs a request just after answering it: wait for ``at_least`` lines, then let stragglers land."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(1 for line in repo.requests() if line.startswith(prefix)) >= at_least:
            break
        time.sleep(0.02)
    time.sleep(0.2)
    return [line for line in repo.requests() if line.startswith(prefix)]


def _count(repo: ChartRepo, prefix: str) -> int:
    return len(_lines(repo, prefix))


async def test_resolve_and_download(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "101.0.0", "101.1.0", "101.2.0-rc.1")
    async with ChartSources(tmp_path / "cache", index_ttl=60) as sources:
        req = ChartRequest(repo=chart_repo.url.rstrip("/"), chart="hello", version="^101")
        version, digest = await sources.resolve_version(req)
        assert version == "101.1.0"
        got = await sources.fetch(req)
    assert (got.kind, got.name, got.version) == ("http", "hello", "101.1.0")
    data = got.path.read_bytes()
    assert got.digest == "sha256:" + hashlib.sha256(data).hexdigest() == digest  # the index digest, verified
    assert got.path == tmp_path / "cache" / "charts" / "sha256" / f"{got.digest[7:]}.tgz"
    assert got.source_url == f"{chart_repo.url}hello-101.1.0.tgz"
    assert data == charts.package("hello", "101.1.0").read_bytes()


async def test_prerelease_only_when_asked(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "111.0.0", "111.1.0-rc.1")
    async with ChartSources(tmp_path / "cache") as sources:
        stable = await sources.resolve_version(ChartRequest(chart_repo.url, "hello", ">=111.0.0 <112"))
        pre = await sources.resolve_version(ChartRequest(chart_repo.url, "hello", ">=111.0.0-0 <112.0.0-0"))
    assert stable[0] == "111.0.0"
    assert pre[0] == "111.1.0-rc.1"


async def test_missing_version_and_chart(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "121.0.0")
    async with ChartSources(tmp_path / "cache") as sources:
        with pytest.raises(VersionNotFound) as info:
            await sources.fetch(ChartRequest(chart_repo.url, "hello", "~121.5"))
        with pytest.raises(ChartNotFound, match='chart "nope" not found'):
            await sources.fetch(ChartRequest(chart_repo.url, "nope", ""))
    msg = str(info.value)
    assert msg.startswith(f'no chart version found for hello matching "~121.5" in {chart_repo.url}')
    assert "121.0.0" in msg
    assert not info.value.retryable


async def test_new_version_seen_after_ttl_and_304_when_unchanged(
    chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path
) -> None:
    _publish(chart_repo, charts, "131.0.0")
    req = ChartRequest(chart_repo.url, "hello", "131.x")
    async with ChartSources(tmp_path / "cache", index_ttl=0.3) as sources:
        assert (await sources.resolve_version(req))[0] == "131.0.0"
        await asyncio.sleep(0.4)
        chart_repo.reset_requests()
        assert (await sources.resolve_version(req))[0] == "131.0.0"  # unchanged: revalidated
        assert _lines(chart_repo, "GET /index.yaml") == ["GET /index.yaml 304"]
        assert sources.stats["index_304"] == 1
        _publish(chart_repo, charts, "131.1.0")
        await asyncio.sleep(0.4)
        assert (await sources.resolve_version(req))[0] == "131.1.0"


async def test_cached_within_ttl(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "132.0.0")
    req = ChartRequest(chart_repo.url, "hello", "132.x")
    async with ChartSources(tmp_path / "cache", index_ttl=3600) as sources:
        assert (await sources.resolve_version(req))[0] == "132.0.0"
        _publish(chart_repo, charts, "132.1.0")
        assert (await sources.resolve_version(req))[0] == "132.0.0"  # still the cached index
        assert sources.stats["index_requests"] == 1
        # a poll may ask for a fresher answer than the TTL
        assert (await sources.resolve_version(req, max_age=0))[0] == "132.1.0"
        assert sources.stats["index_requests"] == 2


async def test_100_concurrent_resolves_make_one_index_request(
    chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path
) -> None:
    _publish(chart_repo, charts, "141.0.0")
    chart_repo.reset_requests()
    async with ChartSources(tmp_path / "cache") as sources:
        req = ChartRequest(chart_repo.url, "hello", "^141")
        results = await asyncio.gather(*(sources.resolve_version(req) for _ in range(100)))
    assert {r[0] for r in results} == {"141.0.0"}
    assert _count(chart_repo, "GET /index.yaml") == 1


async def test_100_fetches_download_once(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "151.0.0")
    chart_repo.reset_requests()
    async with ChartSources(tmp_path / "cache") as sources:
        req = ChartRequest(chart_repo.url, "hello", "151.0.0")
        results = await asyncio.gather(*(sources.fetch(req) for _ in range(100)))
        again = await sources.fetch(req)
        assert sources.stats["chart_downloads"] == 1
    assert len({r.path for r in results} | {again.path}) == 1
    assert _count(chart_repo, "GET /hello-151.0.0.tgz") == 1
    assert _count(chart_repo, "GET /index.yaml") == 1


async def test_tarball_url(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo, charts, "161.0.0")
    url = f"{chart_repo.url}hello-161.0.0.tgz"
    async with ChartSources(tmp_path / "cache") as sources:
        got = await sources.fetch(ChartRequest(repo="", chart=url, version=""))
        assert await sources.resolve_version(ChartRequest("", url)) == ("161.0.0", got.digest)
        with pytest.raises(VersionNotFound):
            await sources.fetch(ChartRequest("", url, "^2"))
    assert (got.kind, got.name, got.version, got.source_url) == ("tarball", "hello", "161.0.0", url)
    assert got.path.read_bytes() == charts.package("hello", "161.0.0").read_bytes()


# ---- basic auth ---------------------------------------------------------------------------------------


async def test_basic_auth_right_wrong_missing(
    chart_repo_auth: ChartRepo, charts: ChartFactory, tmp_path: Path
) -> None:
    _publish(chart_repo_auth, charts, "171.0.0")
    req = ChartRequest(chart_repo_auth.url, "hello", "^171")
    right = auth_from_secret({"username": chart_repo_auth.username, "password": chart_repo_auth.password.encode()},
                             insecure_skip_tls_verify=False, fallback_ca_pem=None)
    wrong = RepoAuth(username=chart_repo_auth.username, password="not-the-password-xyz")
    async with ChartSources(tmp_path / "cache") as sources:
        got = await sources.fetch(req, right)
        assert got.version == "171.0.0"
        with pytest.raises(AuthError) as bad:
            await sources.fetch(req, wrong)
        with pytest.raises(AuthError) as missing:
            await sources.fetch(req, RepoAuth())
    assert "401" in str(bad.value) and "not-the-password-xyz" not in str(bad.value)
    assert "unauthorized" not in str(bad.value).lower().split("401", 1)[1].replace("unauthorized", "", 1)
    assert "no credentials configured" in str(missing.value)
    assert chart_repo_auth.password not in repr(right)


async def test_credentials_stay_on_the_repository_host(
    tools: Tools, chart_repo_auth: ChartRepo, charts: ChartFactory, tmp_path: Path
) -> None:
    """An index whose chart URL points at another origin: credentials go there only with pass_credentials."""
    _publish(chart_repo_auth, charts, "181.0.0")
    tgz = charts.package("hello", "181.0.0")
    other = ChartRepo(tools, workdir=tmp_path / "other")
    other.dir.mkdir(parents=True)
    (other.dir / "index.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "entries": {"hello": [{
            "apiVersion": "v2", "name": "hello", "version": "181.0.0",
            "digest": hashlib.sha256(tgz.read_bytes()).hexdigest(),
            "urls": [f"{chart_repo_auth.url}hello-181.0.0.tgz"],
        }]},
    }))
    user, pw = chart_repo_auth.username, chart_repo_auth.password
    with other:
        req = ChartRequest(other.url, "hello", "181.0.0")
        async with ChartSources(tmp_path / "cache") as sources:
            with pytest.raises(AuthError, match="401"):
                await sources.fetch(req, RepoAuth(user, pw))
            got = await sources.fetch(req, RepoAuth(user, pw, pass_credentials=True))
    assert got.version == "181.0.0"


# ---- TLS ----------------------------------------------------------------------------------------------


async def test_tls_trust_options(chart_repo_tls: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    _publish(chart_repo_tls, charts, "191.0.0")
    req = ChartRequest(chart_repo_tls.url, "hello", "191.0.0")
    pem = chart_repo_tls.ca_pem
    from_secret = auth_from_secret({"cacerts": pem.encode()}, insecure_skip_tls_verify=False, fallback_ca_pem=None)
    from_bundle = auth_from_secret({}, insecure_skip_tls_verify=False, fallback_ca_pem=pem)
    skip = auth_from_secret({}, insecure_skip_tls_verify=True, fallback_ca_pem=None)
    async with ChartSources(tmp_path / "cache") as sources:
        for auth in (from_secret, from_bundle, skip):
            assert (await sources.fetch(req, auth)).version == "191.0.0"
    async with ChartSources(tmp_path / "cache2") as sources:
        with pytest.raises(TLSError) as info:
            await sources.fetch(req, RepoAuth())
    assert "x509: certificate signed by unknown authority" in str(info.value)
    assert not info.value.retryable


async def test_unreachable_repository_is_retryable(tmp_path: Path) -> None:
    async with ChartSources(tmp_path / "cache", http_timeout=5) as sources:
        with pytest.raises(Exception) as info:
            await sources.resolve_version(ChartRequest("http://127.0.0.1:9/", "hello", ""))
    assert "connection refused" in str(info.value)
    assert getattr(info.value, "retryable", False)


HELM_CASES = ["", "^201", "~201.1", "201.1.x", ">=201.0.0-0 <201.2.0-0", "v201.0.0", ">201.0.0 <201.2.0", "*"]


async def test_agrees_with_helm(chart_repo: ChartRepo, charts: ChartFactory, tmp_path: Path) -> None:
    """Our pick for each constraint is the version helm itself picks from the same repository."""
    _publish(chart_repo, charts, "201.0.0", "201.1.0", "201.1.5", "201.2.0-rc.1")
    async with ChartSources(tmp_path / "cache") as sources:
        for constraint in HELM_CASES:
            if not constraint:  # the shared repo may hold higher versions from other tests: compare a range
                continue
            args = ["show", "chart", "hello", "--repo", chart_repo.url, "--version", constraint]
            helm_version = yaml.safe_load(charts.helm(*args).stdout)["version"]
            ours = await sources.fetch(ChartRequest(chart_repo.url, "hello", constraint))
            assert ours.version == helm_version, constraint
            assert yaml.safe_load(charts.helm("show", "chart", str(ours.path)).stdout)["version"] == helm_version
