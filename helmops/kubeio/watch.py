"""Raw watch streams of any kind by its REST path, with a bounded line length and the bounded JSON parser.

The drift watches follow kinds named by release manifests, which tenants write, so no typed API applies and
nothing in an event may be trusted to be small or shallow: each line is cut at :data:`MAX_EVENT_BYTES`
(an over-long event is reported as :data:`OVERSIZED`, never buffered) and parsed by
:func:`helmops.kubeio.bounded.loads`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from helmops.kubeio.bounded import loads as bounded_loads
from helmops.kubeio.rest import ListFailed, get_raw

#: the longest watch event line kept (an object of the API server's 1.5 MiB request limit fits many times).
MAX_EVENT_BYTES = 8 * 1024 * 1024
#: server-side end of one watch request; the caller reconnects from the last resourceVersion.
WATCH_SECONDS = 290
#: an event line with no object (over-long): the caller must assume anything of this kind changed.
OVERSIZED = "OVERSIZED"


class WatchExpired(Exception):
    """The resourceVersion is too old (HTTP 410 or an ERROR event with code 410): list again."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or OVERSIZED
    object: dict[str, Any] | None

    @property
    def resource_version(self) -> str:
        meta = (self.object or {}).get("metadata") or {}
        return str(meta.get("resourceVersion") or "")


async def current_resource_version(api: Any, path: str, label_selector: str) -> str:
    """The list's resourceVersion (one item asked for): where a watch starts without replaying every
    existing object as ADDED."""
    status, reason, data = await get_raw(api, path, {"labelSelector": label_selector, "limit": "1"})
    if status >= 300:
        raise ListFailed(status, reason)
    doc = await asyncio.to_thread(bounded_loads, data)
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return str((meta or {}).get("resourceVersion") or "")


async def _lines(content: Any) -> AsyncIterator[bytes | None]:
    """Lines of a chunked body; None for a line longer than MAX_EVENT_BYTES (its bytes are dropped)."""
    buf = bytearray()
    skipping = False
    async for chunk in content.iter_any():
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    buf += chunk[start:]
                    if len(buf) > MAX_EVENT_BYTES:
                        buf.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
                yield None
            else:
                buf += chunk[start:end]
                line = bytes(buf)
                buf.clear()
                if len(line) > MAX_EVENT_BYTES:
                    yield None
                elif line.strip():
                    yield line
            start = end + 1


async def watch_events(
    api: Any, path: str, label_selector: str, resource_version: str, *, seconds: int = WATCH_SECONDS
) -> AsyncIterator[WatchEvent]:
    """The events of one watch request from ``resource_version`` until the server ends it. Raises
    :class:`WatchExpired` when the version is gone and :class:`ListFailed` on an HTTP error."""
    query = [
        ("watch", "1"),
        ("labelSelector", label_selector),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(seconds)),
    ]
    method, url, headers, _, _ = await api.param_serialize(
        "GET", path, query_params=query, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    resp = await api.call_api(method, url, header_params=headers, _request_timeout=seconds + 30)
    raw = resp.response
    try:
        if resp.status == 410:
            raise WatchExpired(path)
        if resp.status >= 300:
            raise ListFailed(int(resp.status), str(resp.reason or ""))
        async for line in _lines(raw.content):
            if line is None:
                yield WatchEvent(OVERSIZED, None)
                continue
            doc = await asyncio.to_thread(bounded_loads, line) if len(line) > 65536 else bounded_loads(line)
            if not isinstance(doc, dict):
                continue
            kind, obj = str(doc.get("type") or ""), doc.get("object")
            if kind == "ERROR":
                if isinstance(obj, dict) and obj.get("code") == 410:
                    raise WatchExpired(path)
                raise ListFailed(int((obj or {}).get("code") or 500) if isinstance(obj, dict) else 500, "watch error")
            yield WatchEvent(kind, obj if isinstance(obj, dict) else None)
    finally:
        raw.release()


__all__ = [
    "MAX_EVENT_BYTES",
    "OVERSIZED",
    "WATCH_SECONDS",
    "WatchEvent",
    "WatchExpired",
    "current_resource_version",
    "watch_events",
]
