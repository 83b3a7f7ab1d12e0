"""Raw GETs on a ``kubernetes.aio`` ApiClient, for reads no typed API covers: any kind by its REST path
(readiness, drift lists) and the API server's discovery documents. Bodies are JSON written by tenants or
by the server; they are parsed by :func:`helmops.kubeio.bounded.loads`, never by the client's recursive
parser."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from helmops.kubeio.bounded import loads as bounded_loads

#: seconds a single object or discovery GET may take.
REQUEST_TIMEOUT = 15.0


class ListFailed(Exception):
    """A list GET answered with an HTTP error (``status``, ``reason``; never the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status, self.reason = status, reason


async def get_raw(
    api: Any, path: str, query: Mapping[str, str] | None = None, *, request_timeout: float | None = REQUEST_TIMEOUT
) -> tuple[int, str, bytes]:
    """(HTTP status, reason, body) of an authenticated GET of ``path`` with ``api``'s server and credentials."""
    method, url, headers, _, _ = await api.param_serialize(
        "GET",
        path,
        query_params=list((query or {}).items()) or None,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    resp = await api.call_api(method, url, header_params=headers, _request_timeout=request_timeout)
    data = await resp.read()
    return int(resp.status), str(resp.reason or ""), data


async def get_json(api: Any, path: str) -> tuple[int, Any]:
    """A raw authenticated GET (any kind, no typed model): (status, parsed body), the body None on an error
    status. Bounded parse: release objects are tenant-made and may nest to any depth."""
    status, _, data = await get_raw(api, path)
    if status >= 300:
        return status, None
    return status, bounded_loads(data)


async def list_raw(api: Any, path: str, label_selector: str) -> bytes:
    """The unparsed body of a list GET (a cluster-wide list can be large: the caller parses it off the loop
    with the bounded loader). Raises :class:`ListFailed` on an HTTP error."""
    status, reason, data = await get_raw(api, path, {"labelSelector": label_selector}, request_timeout=None)
    if status >= 300:
        raise ListFailed(status, reason)
    return data


async def list_json(api: Any, path: str, label_selector: str) -> Any:
    """A list GET parsed by the bounded loader in a thread."""
    return await asyncio.to_thread(bounded_loads, await list_raw(api, path, label_selector))


__all__ = ["REQUEST_TIMEOUT", "ListFailed", "get_json", "get_raw", "list_json", "list_raw"]
