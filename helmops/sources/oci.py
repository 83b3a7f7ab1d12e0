"""Helm charts in OCI registries, through oras-py.

oras-py is synchronous and has traps we step around (see docs/sources.md):

* its ``do_request`` retry decorator sleeps ~131 s on auth failures: we use the undecorated function;
* its default "token" auth backend cannot talk to a Basic-auth registry, and keeps a single token: we
  probe ``/v2/`` once per registry, pick the backend from ``Www-Authenticate``, and keep one ``Registry``
  per (registry, repository, credentials);
* ``login()`` writes ``~/.docker/config.json`` and ``load_configs`` reads it: we set credentials on the
  auth backend directly and never load docker configs;
* it has no timeouts: our session adds one to every request;
* every call runs in ``asyncio.to_thread``, one at a time per ``Registry`` (its token state is not
  thread-safe).

Tag listing (paginated via ``Link``), manifest HEAD (for ``Docker-Content-Digest``) and blob downloads use
``Registry.do_request`` so we see status codes and headers, which oras's higher-level helpers hide.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import certifi
import oras.auth
import oras.provider
import requests
import urllib3

from .auth import RepoAuth
from .bounded import BoundedBuffer
from .cache import LRU, ChartStore, SingleFlight
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
    VersionNotFound,
)
from .limits import MIB, SourceLimits
from .net import display_url, network_error, status_error
from .versions import decode_tag, encode_tag, is_exact, nearest, parse_constraint, parse_version, resolve

__all__ = ["HELM_CHART_LAYER", "OciRef", "OciRegistries", "parse_oci_ref"]

T = TypeVar("T")

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
_LEGACY_CHART_LAYER = "application/tar+gzip"
_MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


@dataclass(frozen=True)
class OciRef:
    host: str
    repository: str  # path inside the registry, e.g. "charts/hello"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    @property
    def display(self) -> str:
        return f"oci://{self.host}/{self.repository}"


def _valid_digest(text: str) -> bool:
    algo, _, hexpart = text.partition(":")
    return algo == "sha256" and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


def parse_oci_ref(text: str) -> OciRef:
    """``oci://host[:port]/path/chart[:tag][@sha256:…]``; the host is always the first component."""
    if not text.startswith("oci://"):
        raise InvalidReference(f'"{text}" is not an oci:// reference')
    rest = text[len("oci://"):].rstrip("/")
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _valid_digest(digest):
            raise InvalidReference(f'"{text}": the digest must be sha256:<64 hex digits>')
    host, _, path = rest.partition("/")
    if not host or not path or "@" in host:
        raise InvalidReference(f'"{text}" must name a registry host and a repository path')
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not tag:
            raise InvalidReference(f'"{text}" has an empty tag')
    if any(not part for part in path.split("/")) or path != path.lower():
        raise InvalidReference(f'"{text}": repository paths are lowercase and have no empty segments')
    return OciRef(host=host, repository=path, tag=tag, digest=digest)


@dataclass(frozen=True)
class Resolved:
    tag: str | None
    version: str
    digest: str  # manifest digest


@dataclass(frozen=True)
class _ManifestInfo:
    layer_digest: str
    version: str | None


class _NoRetryRegistry(oras.provider.Registry):  # type: ignore[misc]
    """oras's Registry without the retry decorator, which sleeps for minutes on an auth failure."""

    do_request = oras.provider.Registry.do_request.__wrapped__


class _TimeoutSession(requests.Session):
    """requests has no default timeout and no size limit; oras passes neither.  Never read ~/.netrc or proxy env.

    Every request gets (connect, read) timeouts, so a registry that accepts the connection and goes
    silent fails after ``read_timeout`` seconds.  A request that is not streamed (oras's own token
    requests, and the ``/v2/`` probe) is streamed anyway and read through :func:`read_body`, so a token
    endpoint cannot answer with gigabytes either.
    """

    def __init__(self, timeout: float | SourceLimits) -> None:
        super().__init__()
        self.limits = timeout if isinstance(timeout, SourceLimits) else SourceLimits(total_timeout=timeout)
        self._timeout = (self.limits.connect_timeout, self.limits.read_timeout)
        self.trust_env = False
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        if kwargs.get("stream"):
            return super().request(method, url, *args, **kwargs)
        kwargs["stream"] = True
        resp = super().request(method, url, *args, **kwargs)
        with resp:
            what = f"registry response from {display_url(str(resp.url or url))}"
            body = read_body(resp, self.limits.max_manifest_bytes, what, self.limits.total_timeout)
        resp._content = body
        resp._content_consumed = True  # type: ignore[attr-defined]  # as requests does once it read a body
        return resp


def read_body(resp: requests.Response, cap: int, what: str, total_timeout: float) -> bytes:
    """Read a streamed response; its Content-Encoding is undone chunk by chunk, within ``cap`` either way.

    ``total_timeout`` bounds the whole read: the per-read timeout alone would let a server trickle one
    byte every few seconds forever.
    """
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cap:
        resp.close()
        raise LimitExceeded(f"{what} exceeds the {cap / MIB:g} MiB limit (the server announced {length} bytes)")
    buf = BoundedBuffer(resp.headers.get("Content-Encoding"), cap=cap, wire_cap=cap, what=what)
    deadline = time.monotonic() + total_timeout
    try:
        while chunk := resp.raw.read(1 << 16, decode_content=False):
            buf.feed(chunk)
            if time.monotonic() > deadline:
                resp.close()
                raise SourceUnavailable(f"{what}: timeout after {total_timeout:g}s")
        return buf.finish()
    finally:
        buf.clear()  # an error mid-body must not leave the partial body pinned by its traceback


class _Client:
    """One oras Registry for one (registry, repository, credentials), used by one thread at a time."""

    def __init__(self, reg: Any, prefix: str, host: str, repository: str) -> None:
        self.reg = reg
        self.lock = threading.Lock()
        self.base = f"{prefix}://{host}"
        self.repository = repository

    def request(self, url: str, method: str = "GET", headers: dict[str, str] | None = None,
                stream: bool = False) -> requests.Response:
        """Caller holds ``self.lock``.  A stale bearer token is dropped and the request tried once more."""
        try:
            resp: requests.Response = self.reg.do_request(url, method, headers=dict(headers or {}), stream=stream)
            if resp.status_code == 401 and isinstance(self.reg.auth, oras.auth.TokenAuth) and self.reg.auth.token:
                resp.close()
                self.reg.auth.token = None
                resp = self.reg.do_request(url, method, headers=dict(headers or {}), stream=stream)
        except ValueError as exc:
            if "authentication" in str(exc):
                raise AuthError(
                    f"registry {self.base} did not issue a token for {self.repository}"
                    " (check the credentials in the helm Secret)"
                ) from None
            raise
        return resp


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
        self.timeout = self.limits
        self.ca_dir = ca_dir
        self._clients: LRU[tuple[str, str, str], _Client] = LRU(256)
        self._client_lock = threading.Lock()
        self._backends: dict[tuple[str, str], str] = {}
        self._tags: LRU[tuple[str, str, str], tuple[float, list[str]]] = LRU(1024)
        self._tag_flight: SingleFlight[tuple[str, str, str], list[str]] = SingleFlight()
        self._digests: LRU[tuple[str, str, str, str], tuple[float, str | None]] = LRU(4096)
        self._digest_flight: SingleFlight[tuple[str, str, str, str], str | None] = SingleFlight()
        self._manifests: LRU[str, _ManifestInfo] = LRU(4096)
        self._manifest_flight: SingleFlight[tuple[str, str], _ManifestInfo] = SingleFlight()
        self._blob_flight: SingleFlight[str, Path] = SingleFlight()

    # ---- plumbing -----------------------------------------------------------------------------------

    def _ca_file(self, pem: str) -> str:
        """requests wants a file; system roots + the Secret's CA, as Fleet appends to the system pool."""
        name = hashlib.sha256(pem.encode()).hexdigest()[:24]
        path = self.ca_dir / f"ca-{name}.pem"
        if not path.exists():
            self.ca_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.ca_dir, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(Path(certifi.where()).read_text())
                f.write("\n")
                f.write(pem)
            os.replace(tmp, path)
        return str(path)

    def _verify(self, auth: RepoAuth) -> bool | str:
        if auth.insecure_skip_verify:
            return False
        if auth.ca_pem:
            return self._ca_file(auth.ca_pem)
        return True

    def _backend(self, ref: OciRef, auth: RepoAuth, prefix: str, verify: bool | str) -> str:
        """Ask ``/v2/`` how this registry authenticates (blocking; cached per registry)."""
        key = (ref.host, auth.tls_identity)
        known = self._backends.get(key)
        if known is not None:
            return known
        url = f"{prefix}://{ref.host}/v2/"
        with _TimeoutSession(self.timeout) as s:
            try:
                resp = s.get(url, verify=verify)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise network_error(exc, url, self.timeout) from None
        scheme = resp.headers.get("Www-Authenticate", "").split(" ", 1)[0].lower()
        backend = "basic" if resp.status_code == 401 and scheme == "basic" else "token"
        if resp.status_code in (200, 401):  # a 5xx says nothing about auth: ask again next time
            self._backends[key] = backend
        return backend

    def _client(self, ref: OciRef, auth: RepoAuth) -> _Client:
        key = (ref.host, ref.repository, auth.identity)
        with self._client_lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        prefix = "http" if auth.plain_http else "https"
        verify = self._verify(auth)
        backend = self._backend(ref, auth, prefix, verify)
        if backend == "basic" and not auth.has_credentials:
            raise AuthError(
                f"registry {ref.host} requires credentials (basic auth), but none are configured;"
                " set helmSecretName"
            )
        reg = _NoRetryRegistry(hostname=ref.host, insecure=auth.plain_http, tls_verify=verify,
                               auth_backend=backend)
        session = _TimeoutSession(self.timeout)
        reg.session = session
        reg.auth.session = session
        reg.auth._auth_config = {"auths": {}}  # never consult ~/.docker/config.json or credential helpers
        if hasattr(reg.auth, "_basic_auth"):
            del reg.auth._basic_auth  # ignore ORAS_USER/ORAS_PASS from the environment
        if auth.has_credentials:
            reg.auth.set_basic_auth(auth.username, auth.password)
        client = _Client(reg, prefix, ref.host, ref.repository)
        with self._client_lock:
            self._clients.put(key, client)
        return client

    async def _run(self, ref: OciRef, auth: RepoAuth, what: str, fn: Callable[[_Client], T]) -> T:
        def call() -> T:
            client = self._client(ref, auth)
            with client.lock:
                return fn(client)

        try:
            return await asyncio.to_thread(call)
        except SourceError:
            raise
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise network_error(exc, f"{'http' if auth.plain_http else 'https'}://{ref.host}/v2/{what}",
                                self.timeout) from None

    def _check(self, resp: requests.Response, auth: RepoAuth, ref: OciRef, what: str) -> None:
        if resp.status_code in (200, 201, 202):
            return
        reason = resp.reason or ""
        resp.close()
        if resp.status_code == 404 and what == "tags":
            raise ChartNotFound(f'repository "{ref.host}/{ref.repository}" not found in the registry')
        raise status_error(resp.status_code, reason, resp.url or ref.display, has_credentials=auth.has_credentials)

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
        def work(c: _Client) -> list[str]:
            url = f"{c.base}/v2/{ref.repository}/tags/list?n={self.tag_page_size}"
            out: list[str] = []
            lim = self.limits
            what = f"tag list of {ref.display}"
            for _ in range(lim.max_tags // max(1, min(self.tag_page_size, 100)) + 2):
                self.stats["oci_tag_requests"] += 1
                resp = c.request(url, stream=True)
                with resp:
                    self._check(resp, auth, ref, "tags")
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

        tags = await self._run(ref, auth, f"{ref.repository}/tags/list", work)
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
        def work(c: _Client) -> str | None:
            url = f"{c.base}/v2/{ref.repository}/manifests/{tag}"
            self.stats["oci_manifest_requests"] += 1
            resp = c.request(url, "HEAD", headers={"Accept": _MANIFEST_ACCEPT})
            if resp.status_code == 404:
                return None
            self._check(resp, auth, ref, "manifest")
            digest = resp.headers.get("Docker-Content-Digest")
            if digest and _valid_digest(digest):
                return digest
            # No digest header: fetch the manifest and hash it ourselves.
            self.stats["oci_manifest_requests"] += 1
            resp = c.request(url, "GET", headers={"Accept": _MANIFEST_ACCEPT}, stream=True)
            with resp:
                self._check(resp, auth, ref, "manifest")
                body = read_body(resp, self.limits.max_manifest_bytes, f"manifest {ref.display}:{tag}",
                                 self.limits.total_timeout)
            return "sha256:" + hashlib.sha256(body).hexdigest()

        digest = await self._run(ref, auth, f"{ref.repository}/manifests/{tag}", work)
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
            if not _valid_digest(digest):
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
        def work(c: _Client) -> _ManifestInfo:
            url = f"{c.base}/v2/{ref.repository}/manifests/{digest}"
            self.stats["oci_manifest_requests"] += 1
            lim = self.limits
            resp = c.request(url, "GET", headers={"Accept": _MANIFEST_ACCEPT}, stream=True)
            with resp:
                if resp.status_code == 404:
                    raise ChartNotFound(f"manifest {digest} not found in {ref.display}")
                self._check(resp, auth, ref, "manifest")
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
            if not chart_layers or not _valid_digest(str(chart_layers[0].get("digest", ""))):
                raise InvalidChart(f"{ref.display}@{digest} is not a helm chart (no {HELM_CHART_LAYER} layer)")
            version = (manifest.get("annotations") or {}).get("org.opencontainers.image.version")
            config = manifest.get("config") or {}
            if not isinstance(version, str) and _valid_digest(str(config.get("digest", ""))):
                self.stats["oci_blob_requests"] += 1
                cresp = c.request(f"{c.base}/v2/{ref.repository}/blobs/{config['digest']}", stream=True)
                with cresp:
                    self._check(cresp, auth, ref, "config")
                    cbody = read_body(cresp, lim.max_manifest_bytes, f"config blob of {ref.display}@{digest}",
                                      lim.total_timeout)
                if "sha256:" + hashlib.sha256(cbody).hexdigest() == config["digest"]:
                    try:
                        cfg = json.loads(cbody)
                        version = cfg.get("version") if isinstance(cfg, dict) else None
                    except (ValueError, RecursionError):
                        version = None
            return _ManifestInfo(layer_digest=str(chart_layers[0]["digest"]),
                                 version=version if isinstance(version, str) else None)

        info = await self._run(ref, auth, f"{ref.repository}/manifests/{digest}", work)
        self._manifests.put(digest, info)
        return info

    async def pull(self, ref: OciRef, manifest_digest: str, auth: RepoAuth) -> tuple[_ManifestInfo, Path]:
        """Make sure the chart layer is in the store (verified); returns the manifest info and path."""
        info = await self.manifest(ref, manifest_digest, auth)
        hex_digest = info.layer_digest.split(":", 1)[1]
        if self.store.has(hex_digest):
            self.stats["cache_hits"] += 1
            return info, self.store.path(hex_digest)
        path, shared = await self._blob_flight.do(info.layer_digest, lambda: self._pull_blob(ref, info, auth))
        if shared:
            self.stats["download_shared"] += 1
        return info, path

    async def _pull_blob(self, ref: OciRef, info: _ManifestInfo, auth: RepoAuth) -> Path:
        digest = info.layer_digest
        hex_digest = digest.split(":", 1)[1]
        if self.store.has(hex_digest):
            return self.store.path(hex_digest)

        def work(c: _Client) -> Path:
            self.stats["chart_downloads"] += 1
            tmp = self.store.new_temp()
            lim = self.limits
            where = f"{ref.display}@{digest}"
            try:
                h = hashlib.sha256()
                size = 0
                resp = c.request(f"{c.base}/v2/{ref.repository}/blobs/{digest}", stream=True)
                with resp:
                    self._check(resp, auth, ref, "blob")
                    length = resp.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > lim.max_chart_bytes:
                        raise LimitExceeded(f"chart archive {where} exceeds the {lim.mib('max_chart_bytes')} limit")
                    deadline = time.monotonic() + lim.total_timeout
                    with open(tmp, "wb") as f:
                        # The layer is the .tgz itself: never undo a Content-Encoding, keep the digest's bytes.
                        while chunk := resp.raw.read(1 << 16, decode_content=False):
                            size += len(chunk)
                            if size > lim.max_chart_bytes:
                                raise LimitExceeded(
                                    f"chart archive {where} exceeds the {lim.mib('max_chart_bytes')} limit"
                                )
                            if time.monotonic() > deadline:
                                raise SourceUnavailable(f"chart archive {where}: timeout after {lim.total_timeout:g}s")
                            h.update(chunk)
                            f.write(chunk)
                if "sha256:" + h.hexdigest() != digest:
                    raise IntegrityError(f"chart layer from {ref.display} does not match digest {digest}")
                return self.store.adopt(tmp, hex_digest, where)
            finally:
                if tmp.exists():
                    tmp.unlink()

        return await self._run(ref, auth, f"{ref.repository}/blobs/{digest}", work)
