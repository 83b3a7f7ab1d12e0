"""Clients of OCI registries, through oras-py: one per (registry, repository, credentials), with bounded reads.

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

Chart resolution and pulling (:mod:`helmops.sources.oci`) go through :class:`OciClients`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar

import certifi
import oras.auth
import oras.provider
import requests
import urllib3

from .auth import RepoAuth
from .bounded import BoundedBuffer
from .cache import LRU
from .errors import AuthError, ChartNotFound, LimitExceeded, SourceError, SourceUnavailable
from .limits import MIB, SourceLimits
from .net import display_url, network_error, status_error
from .oci_ref import OciRef

__all__ = ["OciClient", "OciClients", "check_response", "read_body"]

T = TypeVar("T")


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


class OciClient:
    """One oras Registry for one (registry, repository, credentials), used by one thread at a time."""

    def __init__(self, reg: Any, prefix: str, host: str, repository: str) -> None:
        self.reg = reg
        self.lock = threading.Lock()
        self.base = f"{prefix}://{host}"
        self.repository = repository

    def request(
        self, url: str, method: str = "GET", headers: dict[str, str] | None = None, stream: bool = False
    ) -> requests.Response:
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


class OciClients:
    """The :class:`OciClient` of every (registry, repository, credentials), made on first use, and the
    one way to call one: off the event loop, holding its lock, with transport errors mapped to ours."""

    def __init__(self, limits: SourceLimits, ca_dir: Path) -> None:
        self.limits = limits
        self.ca_dir = ca_dir
        self._clients: LRU[tuple[str, str, str], OciClient] = LRU(256)
        self._client_lock = threading.Lock()
        self._backends: dict[tuple[str, str], str] = {}

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
        with _TimeoutSession(self.limits) as s:
            try:
                resp = s.get(url, verify=verify)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise network_error(exc, url, self.limits) from None
        scheme = resp.headers.get("Www-Authenticate", "").split(" ", 1)[0].lower()
        backend = "basic" if resp.status_code == 401 and scheme == "basic" else "token"
        if resp.status_code in (200, 401):  # a 5xx says nothing about auth: ask again next time
            self._backends[key] = backend
        return backend

    def client(self, ref: OciRef, auth: RepoAuth) -> OciClient:
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
                f"registry {ref.host} requires credentials (basic auth), but none are configured; set helmSecretName"
            )
        reg = _NoRetryRegistry(hostname=ref.host, insecure=auth.plain_http, tls_verify=verify, auth_backend=backend)
        session = _TimeoutSession(self.limits)
        reg.session = session
        reg.auth.session = session
        reg.auth._auth_config = {"auths": {}}  # never consult ~/.docker/config.json or credential helpers
        if hasattr(reg.auth, "_basic_auth"):
            del reg.auth._basic_auth  # ignore ORAS_USER/ORAS_PASS from the environment
        if auth.has_credentials:
            reg.auth.set_basic_auth(auth.username, auth.password)
        client = OciClient(reg, prefix, ref.host, ref.repository)
        with self._client_lock:
            self._clients.put(key, client)
        return client

    async def run(self, ref: OciRef, auth: RepoAuth, what: str, fn: Callable[[OciClient], T]) -> T:
        def call() -> T:
            client = self.client(ref, auth)
            with client.lock:
                return fn(client)

        try:
            return await asyncio.to_thread(call)
        except SourceError:
            raise
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise network_error(
                exc, f"{'http' if auth.plain_http else 'https'}://{ref.host}/v2/{what}", self.limits
            ) from None


def check_response(resp: requests.Response, auth: RepoAuth, ref: OciRef, what: str) -> None:
    """Raise the error a registry's non-2xx answer means (closing the response); a 404 on ``tags`` is a
    repository that does not exist."""
    if resp.status_code in (200, 201, 202):
        return
    reason = resp.reason or ""
    resp.close()
    if resp.status_code == 404 and what == "tags":
        raise ChartNotFound(f'repository "{ref.host}/{ref.repository}" not found in the registry')
    raise status_error(resp.status_code, reason, resp.url or ref.display, has_credentials=auth.has_credentials)
