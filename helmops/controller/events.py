"""Events on a HelmApp, posted at most once per identical outcome per :data:`EVENT_REPEAT_SECONDS`: a
failure retried with backoff would otherwise post the same Event on every attempt."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from helmops.api.objects import HelmApp
from helmops.reconcile.result import ActionResult

#: an identical Event (same reason and message) for the same HelmApp is posted at most this often.
EVENT_REPEAT_SECONDS = 600.0


class EventPoster(Protocol):
    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...


class EventRecorder:
    def __init__(self, kube: EventPoster) -> None:
        self._kube = kube
        #: (namespace, name, where) → (reason, message, monotonic time) of the last Event posted.
        self._last: dict[tuple[str, str, str], tuple[str, str, float]] = {}

    async def post(self, app: HelmApp, res: ActionResult, suffix: str = "", where: str = "") -> None:
        """``res`` as Events on ``app`` (warning unless ok); ``where`` names a cluster other than the local one
        ("cluster NAME in namespace NS") and prefixes every message."""
        prefix = f"{where}: " if where else ""
        key = (*app.key, prefix)
        obj = app.ref()
        now = time.monotonic()
        last = self._last.get(key)
        if last and last[:2] == (res.reason, res.message) and now - last[2] < EVENT_REPEAT_SECONDS:
            return  # the same outcome again on retry: one Event (set) per EVENT_REPEAT_SECONDS is enough
        self._last[key] = (res.reason, res.message, now)
        if res.reason:
            await self._kube.event(obj, res.reason, prefix + res.message + suffix, warning=not res.ok)
        for reason, message in res.extra_events:
            await self._kube.event(obj, reason, prefix + message + suffix, warning=True)

    def forget(self, key: tuple[str, str]) -> None:
        for k in [k for k in self._last if k[:2] == key]:
            del self._last[k]


__all__ = ["EVENT_REPEAT_SECONDS", "EventPoster", "EventRecorder"]
