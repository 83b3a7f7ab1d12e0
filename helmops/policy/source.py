"""GitRepoRestrictions as the controller reads them: one list call per namespace, cached briefly.

Restrictions change rarely and are read on every reconcile, so a namespace's list is kept for
``ttl`` seconds (a change applies at the next reconcile after that). When the CRD is not installed (404)
no restriction exists; that answer is kept for ``absent_ttl`` seconds. Any other failure (e.g. the
controller lacks RBAC on gitreporestrictions) raises :class:`PolicyUnreadable`: the reconciler then refuses
to act rather than ignore restrictions it cannot see.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

GROUP, VERSION, PLURAL = "fleet.cattle.io", "v1alpha1", "gitreporestrictions"


class PolicyUnreadable(Exception):
    """GitRepoRestrictions could not be listed (not: the CRD is absent)."""


class RestrictionSource:
    def __init__(
        self,
        custom_objects: Any,
        *,
        ttl: float = 5.0,
        absent_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_namespaces: int = 4096,
    ) -> None:
        self._custom = custom_objects
        self._ttl, self._absent_ttl, self._clock = ttl, absent_ttl, clock
        self._max = max_namespaces
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._absent_until = 0.0

    async def list(self, namespace: str) -> list[dict[str, Any]]:
        now = self._clock()
        if now < self._absent_until:
            return []
        hit = self._cache.get(namespace)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        from kubernetes.aio.client.exceptions import ApiException

        try:
            out = await self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        except ApiException as exc:
            if exc.status == 404:
                self._absent_until = now + self._absent_ttl
                self._cache.clear()
                return []
            raise PolicyUnreadable(
                f"GitRepoRestrictions of namespace {namespace} could not be listed: "
                f"HTTP {exc.status} {exc.reason or ''}".rstrip()
            ) from None
        items = [dict(i) for i in (out or {}).get("items") or []]
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[namespace] = (now, items)
        return items


__all__ = ["GROUP", "PLURAL", "VERSION", "PolicyUnreadable", "RestrictionSource"]
