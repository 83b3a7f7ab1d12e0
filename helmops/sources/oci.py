"""Helm charts in OCI registries: tags, tag digests, version resolution, manifests and chart layers.

Every registry request goes through :mod:`helmops.sources.oci_client` (oras-py, with its traps stepped
around). Tag listing (paginated via ``Link``), manifest HEAD (for ``Docker-Content-Digest``) and blob
downloads use ``Registry.do_request`` so we see status codes and headers, which oras's higher-level helpers
hide. Tag lists and tag digests are cached for the TTL (and served stale while the registry fails), manifests
by digest; concurrent identical requests share one flight.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from .auth import RepoAuth
from .cache import LRU, ChartStore, SingleFlight
from .errors import (
    ChartNotFound,
    ConstraintError,
    IntegrityError,
    InvalidChart,
    InvalidReference,
    LimitExceeded,
    SourceError,
    SourceUnavailable,
    VersionNotFound,
)
from .limits import SourceLimits
from .oci_client import OciClient, OciClients, check_response, read_body
from .oci_ref import OciRef, valid_digest
from .versions import decode_tag, encode_tag, is_exact, nearest, parse_constraint, parse_version, resolve

__all__ = ["HELM_CHART_LAYER", "OciRegistries"]

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
_LEGACY_CHART_LAYER = "application/tar+gzip"
_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class Resolved:
    tag: str | None
    version: str
    digest: str  # manifest digest


@dataclass(frozen=True)
class _ManifestInfo:
    layer_digest: str
    version: str | None


class OciRegistries:
    """Resolve and pull Helm charts from OCI registries; shared by every HelmApp."""

    tag_page_size = 1000

    def __init__(
        self,
        store: ChartStore,
        stats: MutableMapping[str, int],
        *,
        ttl: float,
        timeout: float | SourceLimits,
        ca_dir: Path,
    ) -> None:
        self.limits = timeout if isinstance(timeout, SourceLimits) else SourceLimits(total_timeout=timeout)
        self.store = store
        self.stats = stats
        self.ttl = ttl
        self.clients = OciClients(self.limits, ca_dir)
        self._tags: LRU[tuple[str, str, str], tuple[float, list[str]]] = LRU(1024)
        self._tag_flight: SingleFlight[tuple[str, str, str], list[str]] = SingleFlight()
        self._digests: LRU[tuple[str, str, str, str], tuple[float, str | None]] = LRU(4096)
        self._digest_flight: SingleFlight[tuple[str, str, str, str], str | None] = SingleFlight()
        self._manifests: LRU[str, _ManifestInfo] = LRU(4096)
        self._manifest_flight: SingleFlight[tuple[str, str], _ManifestInfo] = SingleFlight()
        self._blob_flight: SingleFlight[str, Path] = SingleFlight()

    # ---- tags and digests ---------------------------------------------------------------------------

    def _ttl(self, max_age: float | None) -> float:
        return self.ttl if max_age is None else min(self.ttl, max_age)

    async def tags(self, ref: OciRef, auth: RepoAuth, max_age: float | None = None) -> list[str]:
        key = (ref.host, ref.repository, auth.identity)
        cached = self._tags.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl(max_age):
            self.stats["oci_tag_cache_hits"] += 1
            return cached[1]
        try:
            result, _ = await self._tag_flight.do(key, lambda: self._list_tags(key, ref, auth))
        except SourceUnavailable:
            if cached is None:
                raise
            self.stats["oci_tags_stale"] += 1  # stale-if-error, as for HTTP indexes
            return cached[1]
        return result

    async def _list_tags(self, key: tuple[str, str, str], ref: OciRef, auth: RepoAuth) -> list[str]:
        def work(c: OciClient) -> list[str]:
            url = f"{c.base}/v2/{ref.repository}/tags/list?n={self.tag_page_size}"
            out: list[str] = []
            lim = self.limits
            what = f"tag list of {ref.display}"
            for _ in range(lim.max_tags // max(1, min(self.tag_page_size, 100)) + 2):
                self.stats["oci_tag_requests"] += 1
                resp = c.request(url, stream=True)
                with resp:
                    check_response(resp, auth, ref, "tags")
                    raw = read_body(resp, lim.max_tag_list_bytes, what, lim.total_timeout)
                    nxt = resp.links.get("next", {}).get("url")
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError):
                    raise SourceError(f"{what} is not JSON") from None
                tags = body.get("tags") if isinstance(body, dict) else None
                out.extend(t for t in (tags or []) if isinstance(t, str) and len(t) <= 128)
                if len(out) > lim.max_tags:
                    raise LimitExceeded(f"{what} has more than {lim.max_tags} tags")
                if not nxt:
                    break
                url = urljoin(c.base, nxt)
            else:
                raise LimitExceeded(f"{what} has too many pages")
            return out

        tags = await self.clients.run(ref, auth, f"{ref.repository}/tags/list", work)
        self._tags.put(key, (time.monotonic(), tags))
        return tags

    async def tag_digest(self, ref: OciRef, tag: str, auth: RepoAuth, max_age: float | None = None) -> str | None:
        """HEAD the manifest; ``None`` when the tag does not exist.  Cached for the TTL."""
        key = (ref.host, ref.repository, tag, auth.identity)
        cached = self._digests.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl(max_age):
            self.stats["oci_digest_cache_hits"] += 1
            return cached[1]
        try:
            result, _ = await self._digest_flight.do(key, lambda: self._head(key, ref, tag, auth))
        except SourceUnavailable:
            if cached is None:
                raise
            self.stats["oci_digest_stale"] += 1  # stale-if-error, as for HTTP indexes
            return cached[1]
        return result

    async def _head(self, key: tuple[str, str, str, str], ref: OciRef, tag: str, auth: RepoAuth) -> str | None:
        def work(c: OciClient) -> str | None:
            url = f"{c.base}/v2/{ref.repository}/manifests/{tag}"
            self.stats["oci_manifest_requests"] += 1
            resp = c.request(url, "HEAD", headers={"Accept": _MANIFEST_ACCEPT})
            if resp.status_code == 404:
                return None
            check_response(resp, auth, ref, "manifest")
            digest = resp.headers.get("Docker-Content-Digest")
            if digest and valid_digest(digest):
                return digest
            # No digest header: fetch the manifest and hash it ourselves.
            self.stats["oci_manifest_requests"] += 1
            resp = c.request(url, "GET", headers={"Accept": _MANIFEST_ACCEPT}, stream=True)
            with resp:
                check_response(resp, auth, ref, "manifest")
                body = read_body(
                    resp, self.limits.max_manifest_bytes, f"manifest {ref.display}:{tag}", self.limits.total_timeout
                )
            return "sha256:" + hashlib.sha256(body).hexdigest()

        digest = await self.clients.run(ref, auth, f"{ref.repository}/manifests/{tag}", work)
        self._digests.put(key, (time.monotonic(), digest))
        return digest

    # ---- resolution ---------------------------------------------------------------------------------

    async def resolve(self, ref: OciRef, version: str, auth: RepoAuth, max_age: float | None = None) -> Resolved:
        """Constraint/tag/digest -> (tag, chart version, manifest digest); no chart download."""
        text = version.strip()
        if ref.tag and text and text != ref.tag:
            raise InvalidReference(
                f'{ref.display}:{ref.tag} names tag "{ref.tag}" but version is "{text}"; set only one'
            )
        text = text or ref.tag or ""
        digest = ref.digest or (text if text.startswith("sha256:") else None)
        if digest is not None:
            if not valid_digest(digest):
                raise InvalidReference(f'"{digest}" is not a sha256 digest (sha256:<64 hex digits>)')
            info = await self.manifest(ref, digest, auth)
            return Resolved(tag=None, version=info.version or "", digest=digest)

        try:
            parse_constraint(text)
            is_constraint = True
        except ConstraintError:
            is_constraint = False
        if text and (is_exact(text) or not is_constraint):
            # An exact tag short-circuits the listing: one HEAD.
            tag = encode_tag(text)
            found = await self.tag_digest(ref, tag, auth, max_age)
            if found is not None:
                if parse_version(tag, strict=True) is None:  # e.g. "latest": the chart knows its version
                    info = await self.manifest(ref, found, auth)
                    return Resolved(tag=tag, version=info.version or tag, digest=found)
                return Resolved(tag=tag, version=decode_tag(tag), digest=found)
            if not is_constraint:
                tags = await self.tags(ref, auth, max_age)  # also tells "no such repository" apart
                raise VersionNotFound(ref.name, text, ref.display, nearest(tags, "", oci_tags=True))

        tags = await self.tags(ref, auth, max_age)
        picked = resolve(tags, text, oci_tags=True)
        if picked is None:
            raise VersionNotFound(ref.name, text or "*", ref.display, nearest(tags, text, oci_tags=True))
        found = await self.tag_digest(ref, picked, auth, max_age)
        if found is None:  # deleted between listing and HEAD
            self._tags.pop((ref.host, ref.repository, auth.identity))
            raise VersionNotFound(ref.name, text or "*", ref.display)
        return Resolved(tag=picked, version=decode_tag(picked), digest=found)

    # ---- manifests and blobs ------------------------------------------------------------------------

    async def manifest(self, ref: OciRef, digest: str, auth: RepoAuth) -> _ManifestInfo:
        known = self._manifests.get(digest)
        if known is not None:
            return known
        result, _ = await self._manifest_flight.do(
            (f"{ref.host}/{ref.repository}", digest), lambda: self._get_manifest(ref, digest, auth)
        )
        return result

    async def _get_manifest(self, ref: OciRef, digest: str, auth: RepoAuth) -> _ManifestInfo:
        def work(c: OciClient) -> _ManifestInfo:
            url = f"{c.base}/v2/{ref.repository}/manifests/{digest}"
            self.stats["oci_manifest_requests"] += 1
            lim = self.limits
            resp = c.request(url, "GET", headers={"Accept": _MANIFEST_ACCEPT}, stream=True)
            with resp:
                if resp.status_code == 404:
                    raise ChartNotFound(f"manifest {digest} not found in {ref.display}")
                check_response(resp, auth, ref, "manifest")
                body = read_body(resp, lim.max_manifest_bytes, f"manifest {ref.display}@{digest}", lim.total_timeout)
            if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                raise IntegrityError(f"manifest from {ref.display} does not match digest {digest}")
            try:
                manifest = json.loads(body)
            except (ValueError, RecursionError):
                raise InvalidChart(f"manifest {digest} in {ref.display} is not JSON") from None
            if not isinstance(manifest, dict):
                raise InvalidChart(f"manifest {digest} in {ref.display} is not a JSON object")
            layers = manifest.get("layers")
            layers = [layer for layer in layers if isinstance(layer, dict)] if isinstance(layers, list) else []
            chart_layers = [la for la in layers if la.get("mediaType") == HELM_CHART_LAYER] or [
                la for la in layers if la.get("mediaType") == _LEGACY_CHART_LAYER
            ]
            if not chart_layers or not valid_digest(str(chart_layers[0].get("digest", ""))):
                raise InvalidChart(f"{ref.display}@{digest} is not a helm chart (no {HELM_CHART_LAYER} layer)")
            version = (manifest.get("annotations") or {}).get("org.opencontainers.image.version")
            config = manifest.get("config") or {}
            if not isinstance(version, str) and valid_digest(str(config.get("digest", ""))):
                self.stats["oci_blob_requests"] += 1
                cresp = c.request(f"{c.base}/v2/{ref.repository}/blobs/{config['digest']}", stream=True)
                with cresp:
                    check_response(cresp, auth, ref, "config")
                    cbody = read_body(
                        cresp, lim.max_manifest_bytes, f"config blob of {ref.display}@{digest}", lim.total_timeout
                    )
                if "sha256:" + hashlib.sha256(cbody).hexdigest() == config["digest"]:
                    try:
                        cfg = json.loads(cbody)
                        version = cfg.get("version") if isinstance(cfg, dict) else None
                    except (ValueError, RecursionError):
                        version = None
            return _ManifestInfo(
                layer_digest=str(chart_layers[0]["digest"]), version=version if isinstance(version, str) else None
            )

        info = await self.clients.run(ref, auth, f"{ref.repository}/manifests/{digest}", work)
        self._manifests.put(digest, info)
        return info

    async def pull(self, ref: OciRef, manifest_digest: str, auth: RepoAuth) -> tuple[_ManifestInfo, Path]:
        """Make sure the chart layer is in the store (verified); returns the manifest info and path."""
        info = await self.manifest(ref, manifest_digest, auth)
        hex_digest = info.layer_digest.split(":", 1)[1]
        if await self.store.present(hex_digest):
            self.stats["cache_hits"] += 1
            return info, self.store.path(hex_digest)
        path, shared = await self._blob_flight.do(info.layer_digest, lambda: self._pull_blob(ref, info, auth))
        if shared:
            self.stats["download_shared"] += 1
        return info, path

    async def _pull_blob(self, ref: OciRef, info: _ManifestInfo, auth: RepoAuth) -> Path:
        digest = info.layer_digest
        hex_digest = digest.split(":", 1)[1]
        if await self.store.present(hex_digest):
            return self.store.path(hex_digest)

        def work(c: OciClient) -> Path:
            self.stats["chart_downloads"] += 1
            tmp = self.store.new_temp()
            lim = self.limits
            where = f"{ref.display}@{digest}"
            try:
                h = hashlib.sha256()
                size = 0
                resp = c.request(f"{c.base}/v2/{ref.repository}/blobs/{digest}", stream=True)
                with resp:
                    check_response(resp, auth, ref, "blob")
                    length = resp.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > lim.max_chart_bytes:
                        raise LimitExceeded(f"chart archive {where} exceeds the {lim.mib('max_chart_bytes')} limit")
                    deadline = time.monotonic() + lim.total_timeout
                    try:
                        with open(tmp, "wb") as f:
                            # The layer is the .tgz itself: never undo a Content-Encoding, keep the digest's bytes.
                            while chunk := resp.raw.read(1 << 16, decode_content=False):
                                size += len(chunk)
                                if size > lim.max_chart_bytes:
                                    raise LimitExceeded(
                                        f"chart archive {where} exceeds the {lim.mib('max_chart_bytes')} limit"
                                    )
                                if time.monotonic() > deadline:
                                    raise SourceUnavailable(
                                        f"chart archive {where}: timeout after {lim.total_timeout:g}s"
                                    )
                                h.update(chunk)
                                f.write(chunk)
                    except OSError as exc:  # a full cache filesystem: a retryable condition, nothing stored
                        full = self.store.no_room(exc, f"chart archive {where}", size)
                        if full is None:
                            raise
                        raise full from None
                if "sha256:" + h.hexdigest() != digest:
                    raise IntegrityError(f"chart layer from {ref.display} does not match digest {digest}")
                return self.store.adopt(tmp, hex_digest, where)
            finally:
                if tmp.exists():
                    tmp.unlink()

        return await self.clients.run(ref, auth, f"{ref.repository}/blobs/{digest}", work)
