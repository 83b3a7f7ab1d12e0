"""One watch per kind that the tracked releases deploy, on one cluster: drift is noticed when it happens.

The periodic check (``helmops.drift.monitor``) stays the reference — it compares everything, and catches what
a watch cannot (a watch that could not start, RBAC without ``watch``). The watches only make it prompt: the
monitor compares the one object an event carries with its manifest and asks for a check when it drifted.

Costs are bounded whatever tenants deploy: one connection per kind (cluster-wide, Helm's managed-by label),
at most :data:`MAX_WATCHED_KINDS` kinds per cluster (the rest wait for the periodic check), events longer than
``kubeio.watch.MAX_EVENT_BYTES`` are not parsed. A quiet watch costs nothing but the connection: no list is
replayed (a watch starts at the list's current resourceVersion) and bookmarks only move the version.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable

from helmops.kubeio.mapping import Resource
from helmops.kubeio.watch import OVERSIZED, WatchEvent, WatchExpired, current_resource_version, watch_events

log = logging.getLogger("helmops.controller")

#: kinds watched per cluster; a release naming more is still compared by the periodic check.
MAX_WATCHED_KINDS = 64
#: reconnect backoff after a failed watch (seconds): doubled up to the cap, with jitter.
RETRY_FIRST, RETRY_CAP = 1.0, 30.0

#: (resource, event) → None; OVERSIZED means "anything of this kind may have changed" (gap or huge event).
OnEvent = Callable[[Resource, WatchEvent], None]


class KindWatches:
    """The watches of one cluster, started and stopped to follow the kinds the releases name."""

    def __init__(
        self,
        api: object,
        on_event: OnEvent,
        label_selector: str,
        *,
        cluster: str = "local",
        max_kinds: int = MAX_WATCHED_KINDS,
        rng: random.Random | None = None,
    ) -> None:
        self._api, self._on_event, self._selector = api, on_event, label_selector
        self.cluster, self.max_kinds = cluster, max_kinds
        self._rng = rng or random.Random()
        self._tasks: dict[Resource, asyncio.Task[None]] = {}
        self._capped = False

    @property
    def watched(self) -> frozenset[Resource]:
        return frozenset(self._tasks)

    def sync(self, resources: Iterable[Resource]) -> None:
        """Watch exactly ``resources`` (the first :attr:`max_kinds` of them, in a stable order)."""
        wanted = sorted(set(resources), key=lambda r: (r.group, r.version, r.kind))
        if len(wanted) > self.max_kinds:
            if not self._capped:
                log.warning(
                    "drift: %d kinds deployed on cluster %s; watching %d, the rest compared every check period",
                    len(wanted),
                    self.cluster,
                    self.max_kinds,
                )
            self._capped = True
            wanted = wanted[: self.max_kinds]
        else:
            self._capped = False
        keep = set(wanted)
        if keep == set(self._tasks):
            return
        for res in [r for r in self._tasks if r not in keep]:
            self._tasks.pop(res).cancel()
        loop = asyncio.get_running_loop()
        for res in wanted:
            if res not in self._tasks:
                self._tasks[res] = loop.create_task(self._run(res), name=f"helmops-drift-watch-{res.plural}")
        log.info(
            "drift: watching %d kind(s) on cluster %s (%s)",
            len(wanted),
            self.cluster,
            ", ".join(r.plural for r in wanted[:10]) + (", ..." if len(wanted) > 10 else ""),
        )

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, res: Resource) -> None:
        """Watch ``res`` until cancelled. Never raises: failures are retried with backoff, said once."""
        path, version, delay, failing = res.path(), "", RETRY_FIRST, False
        while True:
            try:
                if not version:
                    version = await current_resource_version(self._api, path, self._selector)
                    if failing:
                        log.info("drift: watch of %s on cluster %s is back", res.plural, self.cluster)
                        failing, delay = False, RETRY_FIRST
                        # events may have been missed while the watch was down
                        self._on_event(res, WatchEvent(OVERSIZED, None))
                async for event in watch_events(self._api, path, self._selector, version):
                    version = event.resource_version or version
                    if event.type != "BOOKMARK":
                        self._on_event(res, event)
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                version = ""
                self._on_event(res, WatchEvent(OVERSIZED, None))
                continue
            except Exception as exc:
                if not failing:
                    log.info(
                        "drift: cannot watch %s on cluster %s (retrying; the periodic check still compares it): %s",
                        res.plural,
                        self.cluster,
                        getattr(exc, "reason", None) or type(exc).__name__,
                    )
                else:
                    log.debug("drift: watch of %s on cluster %s failed again: %s", res.plural, self.cluster, exc)
                failing, version = True, ""
                await asyncio.sleep(delay * (1 + 0.2 * self._rng.random()))
                delay = min(RETRY_CAP, delay * 2)


__all__ = ["MAX_WATCHED_KINDS", "KindWatches", "OnEvent"]
