"""Chart sources against a real OCI registry (docker-registry, charts pushed by ``helm push``).

Each test pushes into its own repository path, so the session-wide registries can be shared.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
import requests
import yaml

from helmops.sources import (
    AuthError,
    ChartNotFound,
    ChartRequest,
    ChartSources,
    InvalidReference,
    RepoAuth,
    TLSError,
    VersionNotFound,
    auth_from_secret,
)
from support.charts import ChartFactory
from support.registry import Registry

pytestmark = pytest.mark.integration

PLAIN = RepoAuth(plain_http=True)


def _push(charts: ChartFactory, registry: Registry, path: str, *versions: str) -> str:
    ref = ""
    for v in versions:
        ref = charts.push_oci(charts.package("hello", v), registry, repo_path=path)
    return f"{ref}/hello"


async def test_resolve_by_constraint_and_pull(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-constraint", "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0")
    async with ChartSources(tmp_path / "cache") as sources:
        got = await sources.fetch(ChartRequest(repo="", chart=ref, version="^1"), PLAIN)
        # the later-Fleet form: the OCI reference in repo, chart empty
        later = await sources.fetch(ChartRequest(repo=ref, chart="", version="~1.0"), PLAIN)
        latest = await sources.resolve_version(ChartRequest("", ref, ""), PLAIN)
        pre = await sources.resolve_version(ChartRequest("", ref, ">=1.1.0-0 <2.0.0-0"), PLAIN)
    assert (got.kind, got.name, got.version) == ("oci", "hello", "1.1.0")
    assert got.digest.startswith("sha256:") and got.source_url == f"{ref}:1.1.0@{got.digest}"
    data = got.path.read_bytes()
    assert data == charts.package("hello", "1.1.0").read_bytes()
    assert got.path.name == hashlib.sha256(data).hexdigest() + ".tgz"
    assert later.version == "1.0.0"
    assert latest[0] == "2.0.0"
    assert pre[0] == "1.2.0-rc.1"


async def test_exact_tag_short_circuits_listing(
    oci_registry: Registry, charts: ChartFactory, tmp_path: Path
) -> None:
    ref = _push(charts, oci_registry, "src-exact", "3.0.0", "3.1.0")
    async with ChartSources(tmp_path / "cache") as sources:
        version, digest = await sources.resolve_version(ChartRequest("", ref, "3.0.0"), PLAIN)
        assert sources.stats["oci_tag_requests"] == 0
        tagged = await sources.fetch(ChartRequest("", f"{ref}:3.0.0", ""), PLAIN)
        assert sources.stats["oci_tag_requests"] == 0
    assert version == "3.0.0" and tagged.digest == digest


def _retag(registry: Registry, repo: str, src: str, dst: str) -> None:
    """helm cannot add a tag: put the same manifest under a second one, as `oras tag` would."""
    base = f"http://{registry.host}/v2/{repo}/manifests"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    manifest = requests.get(f"{base}/{src}", headers=accept, timeout=10)
    put = requests.put(f"{base}/{dst}", data=manifest.content, timeout=10,
                       headers={"Content-Type": manifest.headers["Content-Type"]})
    assert put.status_code == 201


async def test_non_semver_tag(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    """A tag such as "latest" (pushed by other tools) is an exact reference; the version comes from the chart."""
    ref = _push(charts, oci_registry, "src-latest", "3.5.0")
    _retag(oci_registry, "src-latest/hello", "3.5.0", "latest")
    async with ChartSources(tmp_path / "cache") as sources:
        version, digest = await sources.resolve_version(ChartRequest("", ref, "latest"), PLAIN)
        got = await sources.fetch(ChartRequest("", f"{ref}:latest", ""), PLAIN)
        assert sources.stats["oci_tag_requests"] == 0
    assert version == got.version == "3.5.0" and got.digest == digest


async def test_digest_reference(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-digest", "4.0.0", "4.1.0")
    async with ChartSources(tmp_path / "cache") as sources:
        _, digest = await sources.resolve_version(ChartRequest("", ref, "4.0.0"), PLAIN)
        assert digest is not None
        by_version = await sources.fetch(ChartRequest("", ref, digest), PLAIN)
        by_ref = await sources.fetch(ChartRequest("", f"{ref}@{digest}", ""), PLAIN)
        with pytest.raises(InvalidReference):
            await sources.fetch(ChartRequest("", f"{ref}@sha256:abc", ""), PLAIN)
    assert by_version.digest == by_ref.digest == digest
    assert by_version.version == by_ref.version == "4.0.0"  # read from the manifest
    assert by_ref.path.read_bytes() == charts.package("hello", "4.0.0").read_bytes()


async def test_build_metadata_tags(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-build", "5.0.0+build.7", "5.0.0-rc.1")
    async with ChartSources(tmp_path / "cache") as sources:
        assert (await sources.resolve_version(ChartRequest("", ref, "^5"), PLAIN))[0] == "5.0.0+build.7"
        got = await sources.fetch(ChartRequest("", ref, "5.0.0+build.7"), PLAIN)
    assert got.version == "5.0.0+build.7"


async def test_repushed_tag_is_noticed(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    path = "src-repush"
    first = charts.package("hello", "6.0.0", app_version="one")
    ref = charts.push_oci(first, oci_registry, repo_path=path) + "/hello"
    async with ChartSources(tmp_path / "cache", index_ttl=0) as sources:
        a = await sources.fetch(ChartRequest("", ref, "6.0.0"), PLAIN)
        second = charts.package("hello", "6.0.0", app_version="two")
        charts.push_oci(second, oci_registry, repo_path=path)
        b = await sources.fetch(ChartRequest("", ref, "6.0.0"), PLAIN)
    assert a.digest != b.digest
    assert b.path.read_bytes() == second.read_bytes()
    third = charts.package("hello", "6.0.0", app_version="three")
    async with ChartSources(tmp_path / "cache", index_ttl=3600) as sources:
        _, d1 = await sources.resolve_version(ChartRequest("", ref, "6.0.0"), PLAIN)
        charts.push_oci(third, oci_registry, repo_path=path)
        _, cached = await sources.resolve_version(ChartRequest("", ref, "6.0.0"), PLAIN)
        _, fresh = await sources.resolve_version(ChartRequest("", ref, "6.0.0"), PLAIN, max_age=0)
    assert d1 == cached == b.digest != fresh


async def test_tag_pagination(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    """We ask for pages of 2 and follow ``Link``; distribution 2.8 ignores ``n`` for tags (v3 honours it),
    so this proves the request is accepted and the full list still arrives."""
    ref = _push(charts, oci_registry, "src-pages", "7.0.0", "7.1.0", "7.2.0", "7.3.0", "7.4.0")
    async with ChartSources(tmp_path / "cache") as sources:
        sources.oci.tag_page_size = 2
        version, _ = await sources.resolve_version(ChartRequest("", ref, "7.x"), PLAIN)
        assert sources.stats["oci_tag_requests"] >= 1
    assert version == "7.4.0"


async def test_not_found_errors(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-missing", "8.0.0", "8.1.0")
    async with ChartSources(tmp_path / "cache") as sources:
        with pytest.raises(VersionNotFound) as info:
            await sources.fetch(ChartRequest("", ref, "^9"), PLAIN)
        with pytest.raises(ChartNotFound) as missing:
            await sources.fetch(ChartRequest("", f"oci://{oci_registry.host}/src-missing/nothing", "^1"), PLAIN)
        with pytest.raises(VersionNotFound):
            await sources.fetch(ChartRequest("", ref, "8.9.9"), PLAIN)
    assert str(info.value).startswith(f'no chart version found for hello matching "^9" in {ref}')
    assert "8.1.0" in str(info.value)
    assert str(missing.value) == f'repository "{oci_registry.host}/src-missing/nothing" not found in the registry'


async def test_100_concurrent_fetches(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-many", "9.0.0", "9.1.0")
    async with ChartSources(tmp_path / "cache") as sources:
        req = ChartRequest("", ref, "^9")
        results = await asyncio.gather(*(sources.fetch(req, PLAIN) for _ in range(100)))
        assert sources.stats["chart_downloads"] == 1
        assert sources.stats["oci_tag_requests"] == 1
    assert {r.version for r in results} == {"9.1.0"}


async def test_plain_http_needs_opt_in(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    ref = _push(charts, oci_registry, "src-plain", "10.0.0")
    async with ChartSources(tmp_path / "cache", http_timeout=10) as sources:
        with pytest.raises(TLSError, match="server gave HTTP response to HTTPS client"):
            await sources.fetch(ChartRequest("", ref, "10.0.0"), RepoAuth())


# ---- basic auth ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)  # oras's retry decorator would sleep ~131 s here
async def test_basic_auth_right_wrong_missing(
    oci_registry_auth: Registry, charts: ChartFactory, tmp_path: Path
) -> None:
    reg = oci_registry_auth
    ref = _push(charts, reg, "src-auth", "11.0.0", "11.1.0")
    right = auth_from_secret(
        {"username": reg.username, "password": reg.password, "basicHTTP": "true"},
        insecure_skip_tls_verify=False, fallback_ca_pem=None,
    )
    wrong = RepoAuth(username=reg.username, password="wrong-password-xyz", plain_http=True)
    async with ChartSources(tmp_path / "cache") as sources:
        got = await sources.fetch(ChartRequest("", ref, "^11"), right)
        assert got.version == "11.1.0"
        with pytest.raises(AuthError) as bad:
            await sources.fetch(ChartRequest("", ref, "^11"), wrong)
        with pytest.raises(AuthError) as missing:
            await sources.fetch(ChartRequest("", ref, "^11"), PLAIN)
    assert "401" in str(bad.value) and "wrong-password-xyz" not in str(bad.value)
    assert "requires credentials" in str(missing.value)


# ---- TLS ----------------------------------------------------------------------------------------------


async def test_tls_trust_options(oci_registry_tls: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    reg = oci_registry_tls
    ref = _push(charts, reg, "src-tls", "12.0.0")
    req = ChartRequest("", ref, "12.0.0")
    pem = reg.ca_pem
    options = [
        auth_from_secret({"cacerts": pem}, insecure_skip_tls_verify=False, fallback_ca_pem=None),
        auth_from_secret({}, insecure_skip_tls_verify=False, fallback_ca_pem=pem),
        auth_from_secret({}, insecure_skip_tls_verify=True, fallback_ca_pem=None),
    ]
    for i, auth in enumerate(options):
        async with ChartSources(tmp_path / f"cache{i}") as sources:
            assert (await sources.fetch(req, auth)).version == "12.0.0"
    async with ChartSources(tmp_path / "untrusted") as sources:
        with pytest.raises(TLSError) as info:
            await sources.fetch(req, RepoAuth())
    assert "x509: certificate signed by unknown authority" in str(info.value)


HELM_CASES = ["", "^13", "~13.1", "13.1.x", ">=13.0.0-0 <13.2.0-0", "13.2.0-rc.1", "13.2.0+b.1", ">13.0.0 <13.2.0",
              "*"]


async def test_agrees_with_helm(oci_registry: Registry, charts: ChartFactory, tmp_path: Path) -> None:
    """Our pick for each constraint is the version helm itself pulls, and the cached file is a chart helm reads."""
    ref = _push(charts, oci_registry, "src-helm", "13.0.0", "13.1.0", "13.1.5", "13.2.0-rc.1", "13.2.0+b.1")
    async with ChartSources(tmp_path / "cache") as sources:
        for constraint in HELM_CASES:
            args = ["show", "chart", ref, "--plain-http"] + (["--version", constraint] if constraint else [])
            helm_version = yaml.safe_load(charts.helm(*args).stdout)["version"]
            ours = await sources.fetch(ChartRequest("", ref, constraint), PLAIN)
            assert ours.version == helm_version, constraint
            assert yaml.safe_load(charts.helm("show", "chart", str(ours.path)).stdout)["version"] == helm_version
        # Where helm gives up, we don't: helm uses any version-looking text as a literal tag ("13.2.0",
        # "v13.1.0", "13.1" -> "not found"); we try that tag first and then read it as a constraint.
        assert (await sources.resolve_version(ChartRequest("", ref, "13.2.0"), PLAIN))[0] == "13.2.0+b.1"
        assert (await sources.resolve_version(ChartRequest("", ref, "v13.1.0"), PLAIN))[0] == "13.1.0"
        assert (await sources.resolve_version(ChartRequest("", ref, "13.1"), PLAIN))[0] == "13.1.5"
