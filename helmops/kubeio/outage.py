"""Quiet outages of the management API server: one WARNING when it goes away, one INFO when it is back.

While the API server is down every part of the process retries on its own — kopf's watchers, the reconcile
workers (backoff), the drift monitor and the poller — and each retry used to log at ERROR with a full
traceback, burying the one fact that matters. The retries are right; their noise is not. So one logging
filter sits on the process' log handler and recognises records that only say "the management API server
cannot be reached" (a connection error naming its host:port, or one from kopf or the Kubernetes client
while an outage is under way). The first such record starts a probe of the API server (``/readyz``):
when the probe fails too, one WARNING says the API server is gone; while it is gone those records are
demoted to DEBUG without their traceback (dropped unless the process logs at DEBUG); when a probe succeeds
one INFO says it is back and how long it was away. A record that turns out to be a blip (the probe
succeeds) was still demoted: the caller retries it anyway.

Connection errors to any other host (a downstream cluster, a chart repository) are not touched: they have
their own per-HelmApp conditions and log lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("helmops.kubeio.outage")

#: seconds between probes while the API server is away.
PROBE_INTERVAL = 1.0
#: words that mark a failure to reach a server (exception names and the texts aiohttp/urllib3/kopf use).
_MARKERS = (
    "ClientConnectorError",
    "ClientConnectionError",
    "ClientOSError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ClientPayloadError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "Cannot connect to host",
    "Connect call failed",
    "Connection refused",
    "Connection reset",
    "Server disconnected",
    "TimeoutError",
    # an API server that is starting: it answers, but not yet (503 before its paths are installed, 429 while
    # its watch cache fills)
    "ServiceUnavailable",
    "storage is (re)initializing",
    "APITooManyRequestsError",
)
#: loggers of clients that only ever talk to the management API server.
_CLIENT_LOGGERS = ("kopf", "kubernetes")
#: our loggers whose uncaught exceptions come from the management API server.
_OUR_LOGGERS = ("helmops.runtime", "helmops.controller", "helmops.drift")


def _exceptions(record: logging.LogRecord) -> list[BaseException]:
    """Every exception a record carries (its exc_info and its arguments), with their causes."""
    roots: list[BaseException] = []
    if record.exc_info and isinstance(record.exc_info[1], BaseException):
        roots.append(record.exc_info[1])
    args = record.args if isinstance(record.args, tuple) else ()
    roots.extend(a for a in args if isinstance(a, BaseException))
    out: list[BaseException] = []
    while roots and len(out) < 32:
        exc = roots.pop()
        if exc in out:
            continue
        out.append(exc)
        roots.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    return out


class Outage(logging.Filter):
    """The filter and the state: is the management API server reachable?"""

    def __init__(self, server: str, probe: Callable[[], Awaitable[bool]], *, interval: float = PROBE_INTERVAL) -> None:
        super().__init__()
        parts = urlsplit(server)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        #: how messages name the API server ("host:port"), e.g. in aiohttp's "Cannot connect to host h:p".
        self.address = f"{parts.hostname}:{port}"
        self._probe, self._interval = probe, interval
        self.down_since: float | None = None
        self.demoted = 0
        self._probing: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- recognising a record ---------------------------------------------------------------------
    def about_outage(self, record: logging.LogRecord) -> bool:
        """Does this record only say the management API server cannot be reached?"""
        if record.name.startswith(log.name) or record.levelno < logging.INFO:
            return False
        excs = _exceptions(record)
        text = record.getMessage() + " " + " ".join(f"{type(e).__name__}: {e}" for e in excs)
        if not any(m in text for m in _MARKERS) and not any(
            isinstance(e, (ConnectionError, TimeoutError)) for e in excs
        ):
            return False
        hosts = {f"{getattr(e, 'host', '')}:{getattr(e, 'port', '')}" for e in excs if getattr(e, "host", None)}
        if hosts:
            return self.address in hosts
        if self.address in text:
            return True
        # no host named: kopf and the Kubernetes client only talk to the management API server; an exception
        # that escaped a reconcile or a drift check came from it too (a downstream cluster's failures are
        # caught and reported as text naming the cluster)
        return record.name.startswith(_CLIENT_LOGGERS) or (bool(excs) and record.name.startswith(_OUR_LOGGERS))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.about_outage(record):
            return True
        self.demoted += 1
        self._start_probing()
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True

    # --- the probe ----------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _start_probing(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or (self._probing is not None and not self._probing.done()):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._probing = loop.create_task(self._watch(), name="helmops-api-outage")
        else:  # a record from a worker thread
            loop.call_soon_threadsafe(self._start_probing)

    async def _reachable(self) -> bool:
        try:
            return await self._probe()
        except Exception:
            return False

    async def _watch(self) -> None:
        """Confirms the outage (one WARNING), then probes until the API server answers (one INFO)."""
        if self.down_since is None:
            if await self._reachable():
                return  # a blip: the caller retries
            self.down_since = time.monotonic()
            log.warning(
                "management API server unreachable (%s): retrying quietly (details at DEBUG) until it is back",
                self.address,
            )
        while True:  # a poll on purpose: nothing else can tell us the server is back
            if await self._reachable():
                break
            await asyncio.sleep(self._interval)
        away = time.monotonic() - self.down_since
        log.info(
            "management API server reachable again (%s) after %.0f s; %d retry messages were logged at DEBUG",
            self.address, away, self.demoted,
        )  # fmt: skip
        self.down_since, self.demoted = None, 0

    async def stop(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)


def readiness_probe(api: Any, timeout: float = 5.0) -> Callable[[], Awaitable[bool]]:
    """A probe through the controller's ApiClient: ``GET /readyz`` answers 200 (``/version`` answers while
    the server still refuses requests during its start, so it would announce the return too early)."""

    async def probe() -> bool:
        params = await api.param_serialize(
            method="GET", resource_path="/readyz", path_params={}, query_params=[],
            header_params={"Accept": "text/plain"}, body=None, post_params=[], files={},
            auth_settings=["BearerToken"], collection_formats={},
        )  # fmt: skip
        resp = await api.call_api(*params, _request_timeout=timeout)
        await resp.read()
        # 401/403/404: a server that answers but does not show its readiness to us (a proxy, RBAC)
        return int(resp.status) in (200, 401, 403, 404)

    return probe


def install(api: Any, server: str) -> Outage:
    """Puts the filter on the root logger's handlers (the process' log output) for the running loop."""
    outage = Outage(server, readiness_probe(api))
    outage.bind(asyncio.get_running_loop())
    for handler in logging.getLogger().handlers:
        handler.addFilter(outage)
    return outage


def remove(outage: Outage) -> None:
    for handler in logging.getLogger().handlers:
        handler.removeFilter(outage)


__all__ = ["Outage", "install", "readiness_probe", "remove"]
