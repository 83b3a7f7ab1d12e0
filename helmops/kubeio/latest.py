"""The newest copy of each watched HelmApp: watch events, refreshed by the answers to this process' writes.

A reconcile used to start with a GET of its HelmApp although the watch had just delivered it, and the
promotion gate read it once more before each helm action: two requests per install and one per resync pass.
Reading this copy instead is what an informer cache gives a Go controller. It is never older than this
process' own writes (each write's answer refreshes it), and the watch brings everybody else's; a change
that has not arrived yet queues its own reconcile when it does. A write refused for a stale resourceVersion
(409) drops the copy, so the retry reads the server.

Only HelmApps the watch delivers are held (:meth:`LatestHelmApps.offer`); a GET or a write answer refreshes
an entry the watch made but never makes one, so a HelmApp no watch event would ever update (another
namespace, another shard) is always read from the server. Bounded by the HelmApps this process watches: an
entry goes when its HelmApp is deleted or leaves the shard. Copies are shared, read-only: callers take
``dict(obj)`` before changing the top level and never change nested fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]


def _version(obj: Mapping[str, Any]) -> int | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


def _newer(candidate: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    """Whether ``candidate`` replaces ``held``. resourceVersions are opaque in Kubernetes' contract, but
    every API server backed by etcd gives decimal revisions; anything else is taken as newer (as a watch
    event would be)."""
    a, b = _version(candidate), _version(held)
    return a is None or b is None or a >= b


class LatestHelmApps:
    def __init__(self) -> None:
        self._objs: dict[Key, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._objs)

    def offer(self, obj: Mapping[str, Any]) -> None:
        """A watch event's object: held from now on (until :meth:`forget`)."""
        self._keep(obj, create=True)

    def refresh(self, obj: Mapping[str, Any]) -> None:
        """A GET's or a write's answer: replaces the held copy if newer; holds nothing new."""
        self._keep(obj, create=False)

    def _keep(self, obj: Mapping[str, Any], *, create: bool) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if not all(key):
            return
        held = self._objs.get(key)
        if (held is None and create) or (held is not None and _newer(obj, held)):
            self._objs[key] = dict(obj)

    def get(self, key: Key) -> dict[str, Any] | None:
        obj = self._objs.get(key)
        return dict(obj) if obj is not None else None

    def forget(self, key: Key) -> None:
        self._objs.pop(key, None)


__all__ = ["LatestHelmApps"]
