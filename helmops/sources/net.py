"""HTTP plumbing shared by chart repositories and tarball URLs (aiohttp), plus error wording for both
aiohttp and requests (oras) failures.

Redirects are followed by hand so the credential rule is checked on every hop: credentials go to the
repository's own origin only (unless ``pass_credentials``), also after a redirect.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict

from .auth import RepoAuth, same_origin
from .bounded import BoundedBuffer
from .errors import AuthError, ChartNotFound, LimitExceeded, SourceError, SourceUnavailable, TLSError
from .limits import SourceLimits

__all__ = ["HttpClient", "HttpResponse", "display_url", "status_error", "timeout_text", "x509_message"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 10


def display_url(url: str) -> str:
    """A URL safe to show: no userinfo, and no query (it may carry a signed token)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path, "…" if p.query else "", ""))


def x509_message(err: BaseException | None) -> str:
    """Go's wording for certificate failures, which is what users (and Fleet's docs) search for."""
    code = getattr(err, "verify_code", None)
    if code in (18, 19, 20, 21, 2):
        return "x509: certificate signed by unknown authority"
    if code in (9, 10):
        return "x509: certificate has expired or is not yet valid"
    if code == 62:
        return "x509: certificate is not valid for the requested host name"
    detail = getattr(err, "verify_message", None) or (str(err) if err else "verification failed")
    return f"x509: {detail}"


def status_error(
    status: int, reason: str, url: str, *, has_credentials: bool, what: str = "fetch"
) -> SourceError:
    """Map a non-success HTTP status to a typed error. Never includes the response body."""
    where = display_url(url)
    text = f"failed to {what} {where}: {status} {reason}".rstrip()
    if status in (401, 403):
        hint = "" if has_credentials else " (no credentials configured; set helmSecretName)"
        return AuthError(text + hint)
    if status == 404:
        return ChartNotFound(text)
    if status in (408, 425, 429) or status >= 500:
        return SourceUnavailable(text)
    return SourceError(text)


def find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """Search an exception, its causes/contexts and wrapped ``reason``/``args`` for ``kind``."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, kind):
            return cur
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "reason", None),
                      getattr(cur, "os_error", None), *cur.args])
    return None


def timeout_text(exc: BaseException, timeout: float | SourceLimits) -> str:
    """Which wait ran out: connecting, waiting for the next byte (a hanging server) or the whole request."""
    if not isinstance(timeout, SourceLimits):
        return f"timeout after {timeout:g}s"
    names = {k.__name__ for k in type(exc).__mro__}
    text = str(exc).lower()
    if names & {"ConnectionTimeoutError", "ConnectTimeout", "ConnectTimeoutError"} or "connect timed out" in text:
        return f"connect timeout after {timeout.connect_timeout:g}s"
    if names & {"ServerTimeoutError", "SocketTimeoutError", "ReadTimeout", "ReadTimeoutError"} or (
        "read timed out" in text or "timeout on reading" in text
    ):
        return f"no data for {timeout.read_timeout:g}s (read timeout)"
    return f"timeout after {timeout.total_timeout:g}s"


def network_error(exc: BaseException, url: str, timeout: float | SourceLimits) -> SourceError:
    """Word a transport failure from aiohttp or requests for a user."""
    where = display_url(url)
    host = urlsplit(url).hostname or url
    if isinstance(exc, SourceError):
        return exc
    cert = find_cause(exc, ssl.SSLCertVerificationError)
    if cert is not None or isinstance(exc, aiohttp.ClientConnectorCertificateError):
        inner = getattr(exc, "certificate_error", None) or cert
        return TLSError(f"failed to fetch {where}: tls: failed to verify certificate: {x509_message(inner)}")
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return TLSError(
            f"failed to fetch {where}: http: server gave HTTP response to HTTPS client"
            " (for a plain-HTTP registry set basicHTTP in the helm Secret)"
        )
    if isinstance(exc, aiohttp.ClientSSLError) or find_cause(exc, ssl.SSLError) is not None:
        return TLSError(f"failed to fetch {where}: tls: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or any(
        s in text for s in ("Name or service not known", "NameResolutionError", "Failed to resolve",
                            "nodename nor servname", "Temporary failure in name resolution")
    ):
        return SourceUnavailable(f"failed to fetch {where}: dial tcp: lookup {host}: no such host")
    timed_out = isinstance(exc, TimeoutError) or "timed out" in text.lower()
    if timed_out or "Timeout" in type(exc).__name__:
        return SourceUnavailable(f"failed to fetch {where}: {timeout_text(exc, timeout)}")
    if "Connection refused" in text or find_cause(exc, ConnectionRefusedError) is not None:
        return SourceUnavailable(f"failed to fetch {where}: connection refused")
    return SourceUnavailable(f"failed to fetch {where}: {type(exc).__name__}")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    url: str  # after redirects
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class HttpClient:
    """One aiohttp session for every repository; trust settings vary per request via ``ssl=``."""

    def __init__(self, timeout: float | SourceLimits) -> None:
        if not isinstance(timeout, SourceLimits):
            timeout = SourceLimits(total_timeout=timeout)
        self.limits = timeout
        self.timeout = timeout.total_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}

    async def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                # sock_read: a server that accepted the connection and then went silent (or trickles a
                # byte a minute) fails after read_timeout seconds, so stale-if-error kicks in quickly.
                timeout=aiohttp.ClientTimeout(
                    total=self.limits.total_timeout,
                    sock_connect=min(self.limits.connect_timeout, self.limits.total_timeout),
                    sock_read=min(self.limits.read_timeout, self.limits.total_timeout),
                ),
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def ssl_context(self, auth: RepoAuth) -> ssl.SSLContext:
        key = auth.tls_identity
        ctx = self._ssl.get(key)
        if ctx is None:
            ctx = ssl.create_default_context()
            if auth.ca_pem:
                try:
                    ctx.load_verify_locations(cadata=auth.ca_pem)
                except (ssl.SSLError, ValueError):
                    raise TLSError("the CA bundle (cacerts) is not a valid PEM certificate bundle") from None
            if auth.insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl[key] = ctx
        return ctx

    async def get(
        self,
        url: str,
        auth: RepoAuth,
        *,
        credentials_for: str,
        headers: Mapping[str, str] | None = None,
        max_bytes: int,
        raw: bool = False,
        what: str = "",
    ) -> HttpResponse:
        """GET with manual redirects; credentials only on hops whose origin matches ``credentials_for``.

        ``raw`` is for archives: ask for no content coding and never decode one, so a ``.tgz`` stays the
        exact bytes whose digest the index promises.  Indexes accept gzip and are decoded by us, chunk by
        chunk, so ``max_bytes`` bounds both the bytes sent and the bytes they decompress to.  ``what``
        names the object in a size error (default: the URL).
        """
        session = await self._get_session()
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            send = dict(headers or {})
            # Only codings our bounded decoder handles (aiohttp would also offer br/zstd when installed).
            send["Accept-Encoding"] = "identity" if raw else "gzip, deflate"
            if auth.has_credentials and (auth.pass_credentials or same_origin(current, credentials_for)):
                token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
                send["Authorization"] = f"Basic {token}"
            ssl_arg: ssl.SSLContext | bool = self.ssl_context(auth) if current.startswith("https:") else True
            try:
                async with session.get(current, headers=send, allow_redirects=False, ssl=ssl_arg,
                                       auto_decompress=False) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        nxt = urljoin(current, resp.headers["Location"])
                        if urlsplit(nxt).scheme not in ("http", "https"):
                            msg = f"failed to fetch {display_url(url)}: redirected to a non-HTTP URL"
                            raise SourceError(msg)
                        current = nxt
                        continue
                    body = b""
                    if resp.status == 200:
                        encoding = None if raw else resp.headers.get("Content-Encoding")
                        body = await _read_limited(resp, max_bytes, what or display_url(current), encoding)
                    return HttpResponse(resp.status, resp.reason or "", current, CIMultiDict(resp.headers), body)
            except SourceError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise network_error(exc, current, self.limits) from None
        raise SourceError(f"failed to fetch {display_url(url)}: stopped after {_MAX_REDIRECTS} redirects")


async def _read_limited(resp: aiohttp.ClientResponse, max_bytes: int, what: str, encoding: str | None) -> bytes:
    """The body, aborted as soon as it (or what it decompresses to) passes ``max_bytes``."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise LimitExceeded(f"{what} exceeds the {max_bytes / (1 << 20):g} MiB limit"
                            f" (the server announced {resp.content_length} bytes)")
    buf = BoundedBuffer(encoding, cap=max_bytes, wire_cap=max_bytes, what=what)
    try:
        async for chunk in resp.content.iter_chunked(1 << 16):
            buf.feed(chunk)
        return buf.finish()
    finally:
        buf.clear()  # a timeout mid-body must not leave the partial body pinned by its traceback
