"""Chart sources: a Fleet chart reference -> an exact version and a verified local ``.tgz``.

Three reference forms, as Fleet accepts them:

* HTTP repository: ``repo`` is the repository URL, ``chart`` the chart name;
* OCI: ``chart: oci://host/path/chart`` (Fleet v0.12) or ``repo: oci://host/path/chart`` with an empty
  ``chart`` (later Fleet); ``version`` is a tag, a constraint or a ``sha256:`` digest;
* tarball: ``chart`` is the full URL of a ``.tgz``; its version comes from the Chart.yaml inside.

One :class:`ChartSources` is shared by every HelmApp and cluster; it owns the caches (index/tag lists for
``index_ttl`` seconds, chart archives content-addressed on disk) and de-duplicates concurrent work.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .auth import RepoAuth, auth_from_secret
from .cache import CacheFull, ChartStore
from .errors import (
    AuthError,
    ChartNotFound,
    ConstraintError,
    IntegrityError,
    InvalidChart,
    InvalidReference,
    LimitExceeded,
    SourceError,
    SourceUnavailable,
    TLSError,
    VersionNotFound,
)
from .limits import SourceLimits
from .net import HttpClient, display_url
from .oci import OciRegistries
from .oci_ref import OciRef, parse_oci_ref
from .repo import HttpRepos, chart_meta, chart_meta_from_tgz, chart_url
from .versions import parse_constraint

__all__ = [
    "AuthError",
    "CacheFull",
    "ChartNotFound",
    "ChartRequest",
    "ChartSources",
    "ConstraintError",
    "IntegrityError",
    "InvalidChart",
    "InvalidReference",
    "LimitExceeded",
    "RepoAuth",
    "ResolvedChart",
    "SourceError",
    "SourceLimits",
    "SourceUnavailable",
    "TLSError",
    "VersionNotFound",
    "auth_from_secret",
]


@dataclass(frozen=True)
class ChartRequest:
    """The raw Fleet fields ``spec.helm.repo``, ``.chart`` and ``.version``."""

    repo: str
    chart: str
    version: str = ""


@dataclass(frozen=True)
class ResolvedChart:
    kind: Literal["http", "oci", "tarball"]
    name: str
    version: str
    digest: str  # "sha256:<hex>": the .tgz for http/tarball, the manifest for OCI
    path: Path  # the cached .tgz (shared, read-only: do not modify or delete)
    source_url: str  # for display: no userinfo, query replaced by "?…"


@dataclass(frozen=True)
class _Http:
    repo: str
    chart: str


@dataclass(frozen=True)
class _Tarball:
    url: str


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https") and bool(urlsplit(text).netloc)


def classify(req: ChartRequest) -> _Http | OciRef | _Tarball:
    """Which source form a request names; errors are worded like Fleet's validation."""
    repo, chart = req.repo.strip(), req.chart.strip()
    if chart.startswith("oci://"):
        if repo:
            raise InvalidReference("an oci:// chart needs an empty repo field")
        return parse_oci_ref(chart)
    if repo.startswith("oci://"):
        if chart:
            raise InvalidReference("OCI repository with a non-empty chart field")
        return parse_oci_ref(repo)
    if _is_url(chart) and urlsplit(chart).path.lower().endswith(".tgz"):
        if repo:
            raise InvalidReference("tarball chart with a non-empty repo field")
        return _Tarball(chart)
    if not chart:
        raise InvalidReference("non-OCI repository with an empty chart field")
    if not repo:
        raise InvalidReference("non-tarball chart with an empty repo field")
    if not _is_url(repo):
        raise InvalidReference(f'repo "{display_url(repo)}" is not an http(s):// or oci:// URL')
    return _Http(repo, chart)


class ChartSources:
    """Resolve and fetch charts for every HelmApp; safe to share within one event loop."""

    def __init__(
        self,
        cache_dir: Path,
        index_ttl: float = 60.0,
        http_timeout: float | None = None,
        *,
        max_index_entries: int = 64,
        max_index_bytes: int = 512 << 20,
        limits: SourceLimits | None = None,
        max_cache_bytes: int | None = None,
    ) -> None:
        # Limits default to the process environment (HELMOPS_SOURCE_*), so the controller's flags reach
        # every ChartSources without being threaded through each constructor.
        limits = limits or SourceLimits.from_env()
        if http_timeout is not None:
            limits = replace(limits, total_timeout=http_timeout)
        self.limits = limits
        self.cache_dir = Path(cache_dir)
        self.index_ttl = index_ttl
        self.stats: Counter[str] = Counter()
        self.store = ChartStore(self.cache_dir, limits, max_bytes=max_cache_bytes)
        # per-process files (CA bundles) live in the system temp dir, not in the (shared, persistent) cache
        self._tmp = Path(tempfile.mkdtemp(prefix="helmops-ca-"))
        self._http = HttpClient(limits)
        self.http = HttpRepos(self._http, self.store, self.stats, index_ttl=index_ttl,
                              max_index_entries=max_index_entries, max_index_bytes=max_index_bytes, limits=limits)
        self.oci = OciRegistries(self.store, self.stats, ttl=index_ttl, timeout=limits, ca_dir=self._tmp)
        self._tarball_meta: dict[str, tuple[str, str]] = {}

    async def aclose(self) -> None:
        await self._http.close()
        await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    async def __aenter__(self) -> ChartSources:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def resolve_version(
        self, req: ChartRequest, auth: RepoAuth | None = None, *, max_age: float | None = None
    ) -> tuple[str, str | None]:
        """The exact version a request names now, and its digest when known, without downloading the chart.

        Used by polling; ``max_age`` (seconds) bounds how old the cached index/tag list may be, so a poll
        interval shorter than ``index_ttl`` still sees new versions on time.  For tarballs the archive is
        fetched (conditionally) since the version is inside.
        """
        auth = auth or RepoAuth()
        src = classify(req)
        self.stats["resolves"] += 1
        if isinstance(src, _Http):
            info = await self.http.pick(src.repo, src.chart, req.version, auth, max_age)
            return info.version, f"sha256:{info.digest}" if info.digest else None
        if isinstance(src, OciRef):
            r = await self.oci.resolve(src, req.version, auth, max_age)
            return r.version, r.digest
        chart = await self._tarball(src, req.version, auth)
        return chart.version, chart.digest

    async def fetch(self, req: ChartRequest, auth: RepoAuth | None = None) -> ResolvedChart:
        """Resolve and make sure the chart archive is in the local cache."""
        auth = auth or RepoAuth()
        src = classify(req)
        self.stats["fetches"] += 1
        if isinstance(src, _Http):
            info = await self.http.pick(src.repo, src.chart, req.version, auth)
            if not info.urls:
                raise ChartNotFound(
                    f"no URLs found for chart {src.chart} version {info.version} in {display_url(src.repo)}"
                )
            url = chart_url(src.repo, info.urls[0])
            hex_digest = await self.http.download(url, auth, credentials_for=src.repo, expect_hex=info.digest)
            return ResolvedChart("http", src.chart, info.version, f"sha256:{hex_digest}",
                                 self.store.path(hex_digest), display_url(url))
        if isinstance(src, OciRef):
            r = await self.oci.resolve(src, req.version, auth)
            manifest, path = await self.oci.pull(src, r.digest, auth)
            version = r.version or manifest.version or ""
            where = f"{src.display}:{r.tag}@{r.digest}" if r.tag else f"{src.display}@{r.digest}"
            return ResolvedChart("oci", src.name, version, r.digest, path, where)
        return await self._tarball(src, req.version, auth)

    async def resolve(self, req: ChartRequest, auth: RepoAuth | None = None) -> ResolvedChart:
        """Same as :meth:`fetch`; the name docs/architecture.md uses."""
        return await self.fetch(req, auth)

    async def _tarball(self, src: _Tarball, version: str, auth: RepoAuth) -> ResolvedChart:
        hex_digest = await self.http.download(src.url, auth, credentials_for=src.url,
                                              revalidate_after=self.index_ttl)
        path = self.store.path(hex_digest)
        meta = self._tarball_meta.get(hex_digest)
        if meta is None:
            info = self.store.info(hex_digest)
            if info is not None:
                meta = chart_meta(info, display_url(src.url))
            else:  # not checked in this process (cannot happen after download(); kept for safety)
                data = await asyncio.to_thread(path.read_bytes)
                meta = await asyncio.to_thread(chart_meta_from_tgz, data, display_url(src.url), self.limits)
            self._tarball_meta[hex_digest] = meta
        name, chart_version = meta
        # Fleet ignores a version for tarballs; we hold it to its word when one is given.
        wanted = version.strip()
        if wanted and wanted != chart_version and not parse_constraint(wanted).matches(chart_version):
            raise VersionNotFound(name, version.strip(), display_url(src.url), [chart_version])
        return ResolvedChart("tarball", name, chart_version, f"sha256:{hex_digest}", path, display_url(src.url))
