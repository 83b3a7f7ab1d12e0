"""The live side of a drift check: one cluster-wide list per kind the releases deploy, parsed bounded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from helmops.drift.compare import HELM_MANAGED_SELECTOR
from helmops.kubeio.bounded import loads as bounded_loads
from helmops.kubeio.mapping import Resource
from helmops.reconcile.manifest import ObjectRef, object_ref

log = logging.getLogger("helmops.controller")

#: kinds remembered for the once-per-kind "cannot list" warning: the manifests naming them may be tenant-written.
MAX_WARNED = 1024


async def list_live(
    kinds: Mapping[tuple[str, str], Resource | None],
    list_raw: Callable[[Resource, str], Awaitable[bytes]],
    warned: set[tuple[str, str]],
) -> tuple[dict[ObjectRef, Mapping[str, Any]], set[tuple[str, str]]]:
    """Helm-managed objects of every served kind, by reference, and the kinds that could not be listed (not
    compared: a missing object there is unknown, not drift). ``warned``: kinds whose failure was said already."""
    live: dict[ObjectRef, Mapping[str, Any]] = {}
    failed: set[tuple[str, str]] = set()
    for (api_version, kind), res in kinds.items():
        if res is None:
            continue
        try:
            # Raw bytes through the bounded loader, off the loop: a recursive parser would let one tenant's
            # deeply nested object stop this kind's comparison for every tenant.
            raw = await list_raw(res, HELM_MANAGED_SELECTOR)
            listing = await asyncio.to_thread(bounded_loads, raw)
        except Exception as exc:
            failed.add((api_version, kind))
            reason = getattr(exc, "reason", None) or exc
            if (api_version, kind) not in warned:
                if len(warned) >= MAX_WARNED:
                    warned.clear()  # only the once-per-kind warning depends on it
                warned.add((api_version, kind))
                log.warning("drift: cannot list %s %s (not compared until it can): %s", api_version, kind, reason)
            else:
                log.debug("drift: cannot list %s %s: %s", api_version, kind, reason)
            continue
        warned.discard((api_version, kind))
        for item in (listing if isinstance(listing, dict) else {}).get("items") or []:
            if not isinstance(item, dict):
                continue
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            live[object_ref(item, "", bool(res.namespaced))] = item
    return live, failed


__all__ = ["list_live"]
