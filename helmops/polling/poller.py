"""Polling chart sources for new versions matching a HelmApp's constraint (``pollingInterval``).

Only constraints are polled (empty, ``*`` or a range; never an exact version or a tarball), as in Fleet.
A poll resolves the version without downloading anything; when it differs from ``status.version`` the
HelmApp is put in the work queue and the ordinary reconcile upgrades it (and posts ``GotNewChartVersion``).

Why it stays cheap with thousands of HelmApps:

* every poll time carries ±10% jitter, so HelmApps created together drift apart instead of polling in
  lockstep;
* index/tag lists come from the shared ``ChartSources`` cache with ``max_age`` = half the interval, so a
  repository sees a handful of requests per interval however many HelmApps poll it;
* news travels at once: when one poll finds a new version in an index or tag list, every other HelmApp
  that reads the same one (``schedule.index_key``: repository + chart) is polled right away instead of at its
  own next poll time. Those polls read the index the first one just fetched (the shared cache), each with
  its own credentials and constraint, so they cost no extra repository request and decide nothing for one
  another. A fan-out happens once per (index, version) and at most once per ``FANOUT_MIN_GAP`` per index,
  and woken polls never fan out themselves, so no HelmApp can make others poll in a loop.

The schedule survives restarts: the next poll is due ``interval`` after ``status.lastPollingTriggered``
(or the ``helmops.cattle.io/last-polling-triggered`` annotation, written only when the installed CRD prunes
that status field, as Fleet v0.12's does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from helmops.api.keys import Key
from helmops.api.objects import HelmApp
from helmops.api.parse import lenient_helmapp
from helmops.desired.release import DesiredError
from helmops.errors import HelmopsError
from helmops.kubeio.kube import Conflict
from helmops.polling.schedule import (
    JITTER,
    LAST_POLL_ANNOTATION,
    POLLED,
    index_key,
    interval_seconds,
    jittered,
    last_polled,
    next_poll_delay,
    polled_condition,
    polling_interval,
    source_key,
    ts,
    with_condition,
)
from helmops.runtime import metrics

log = logging.getLogger("helmops.controller")

#: seconds between two fan-outs of the same index (a second new version inside it waits for the timers).
FANOUT_MIN_GAP = 30.0


# --- I/O -------------------------------------------------------------------------------------------
class VersionResolver(Protocol):
    async def resolve(self, helmapp: HelmApp, max_age: float) -> str:
        """The exact version the HelmApp's constraint names now. Raises PollError."""
        ...


class PollError(HelmopsError):
    """The version could not be resolved (its message goes to the Polled condition and an Event)."""


@runtime_checkable
class ChartVersions(Protocol):
    """What polling needs of the controller's chart fetcher (``desired.adapters.SourcesFetcher``)."""

    async def resolve_version(self, helmapp: HelmApp, max_age: float) -> str:
        """The exact version ``spec.helm.version`` names now. Raises DesiredError."""
        ...


class SourcesResolver:
    """A :class:`VersionResolver` over the controller's chart fetcher: the same auth and CA handling, and
    the same shared ``ChartSources`` (so its index cache), as chart downloads (the fetcher reads the helm
    Secret)."""

    def __init__(self, fetcher: ChartVersions) -> None:
        self._fetcher = fetcher

    @staticmethod
    def available(fetcher: Any) -> bool:
        """Whether ``fetcher`` can resolve versions (a fetcher without ``helmops.sources`` cannot)."""
        return isinstance(fetcher, ChartVersions)

    async def resolve(self, helmapp: HelmApp, max_age: float) -> str:
        try:
            return await self._fetcher.resolve_version(helmapp, max_age)
        except DesiredError as exc:
            raise PollError(exc.message, retryable=exc.retryable) from exc


@dataclass
class _Entry:
    interval: float
    source: tuple[str, ...]
    index: tuple[str, str] = ("", "")
    handle: asyncio.TimerHandle | None = None
    running: bool = False
    #: woken by a fan-out while its own poll ran (maybe on the old index): poll again right after.
    again: bool = False


class Poller:
    """One timer per polled HelmApp (a loop timer, not a task), polls run with bounded concurrency."""

    def __init__(
        self,
        kube: Any,
        resolver: VersionResolver,
        enqueue: Callable[[Key], None],
        *,
        concurrency: int = 8,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    ) -> None:
        self.kube, self.resolver, self.enqueue = kube, resolver, enqueue
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._rng = rng or random.Random()
        self._now = now
        self._entries: dict[Key, _Entry] = {}
        #: index -> the polled HelmApps that read it (exactly the keys of ``_entries``, grouped)
        self._by_index: dict[tuple[str, str], set[Key]] = {}
        #: index -> (version, loop time) of its last fan-out; dropped with the index's last HelmApp
        self._fanned: dict[tuple[str, str], tuple[str, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    def due_in(self, key: Key) -> float | None:
        e = self._entries.get(key)
        if e is None or e.handle is None:
            return None
        return max(0.0, e.handle.when() - asyncio.get_running_loop().time())

    def update(self, helmapp: HelmApp, status: Mapping[str, Any] | None = None) -> None:
        """Called for every watch event with the HelmApp as parsed there and its stored status (which the
        model leaves out): (re)plans the HelmApp's poll when its interval or source changed."""
        if self._closed:
            return
        key: Key = helmapp.key
        interval = polling_interval(helmapp)
        if interval <= 0:
            self.forget(key)
            return
        source = source_key(helmapp)
        e = self._entries.get(key)
        if e is not None and e.interval == interval and e.source == source:
            return
        if e is not None:
            self.forget(key)
        e = _Entry(interval, source, index_key(helmapp))
        self._entries[key] = e
        self._by_index.setdefault(e.index, set()).add(key)
        self._schedule(key, e, next_poll_delay(interval, last_polled(helmapp, status), self._now(), self._u()))

    def forget(self, key: Key) -> None:
        e = self._entries.pop(key, None)
        if e is None:
            return
        if e.handle is not None:
            e.handle.cancel()
        peers = self._by_index.get(e.index)
        if peers is not None:
            peers.discard(key)
            if not peers:
                del self._by_index[e.index]
                self._fanned.pop(e.index, None)

    def peers(self, key: Key) -> set[Key]:
        """The other polled HelmApps that read the same index or tag list as ``key``."""
        e = self._entries.get(key)
        return (self._by_index.get(e.index, set()) - {key}) if e is not None else set()

    def close(self) -> None:
        self._closed = True
        for key in list(self._entries):
            self.forget(key)
        for t in self._tasks:
            t.cancel()

    def poll_now(self, key: Key) -> bool:
        """Runs ``key``'s poll now, as its timer would (a fan-out included); False when it is not polled."""
        e = self._entries.get(key)
        if e is None or self._closed:
            return False
        if e.handle is not None:
            e.handle.cancel()
        self._fire(key, e)
        return True

    def _u(self) -> float:
        return self._rng.uniform(-1.0, 1.0)

    def _schedule(self, key: Key, e: _Entry, delay: float) -> None:
        loop = asyncio.get_running_loop()
        e.handle = loop.call_later(delay, self._fire, key, e)

    def _fire(self, key: Key, e: _Entry, woken: bool = False) -> None:
        if self._closed or self._entries.get(key) is not e:
            return
        e.handle = None
        task = asyncio.get_running_loop().create_task(
            self._run(key, e, woken=woken), name=f"helmops-poll-{key[0]}/{key[1]}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Key, e: _Entry, woken: bool = False) -> None:
        if e.running:
            return
        e.running = True
        started = self._now()
        try:
            async with self._sem:
                result, version = await self._poll(key, e.interval)
            if result == "new_version" and version and not woken:
                self._fan_out(key, e, version)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("polling HelmApp %s/%s failed: %s", *key, exc)
        finally:
            e.running = False
            if not self._closed and self._entries.get(key) is e and e.handle is None:
                if e.again:
                    e.again = False
                    self._schedule_woken(key, e)
                else:
                    self._schedule(key, e, next_poll_delay(e.interval, started, self._now(), self._u()))

    def _schedule_woken(self, key: Key, e: _Entry) -> None:
        e.handle = asyncio.get_running_loop().call_later(0, self._fire, key, e, True)

    def _fan_out(self, key: Key, e: _Entry, version: str) -> int:
        """Polls every other HelmApp on ``key``'s index now (see the module docstring); returns how many."""
        if not any(e.index):
            return 0
        now = asyncio.get_running_loop().time()
        last = self._fanned.get(e.index)
        if last is not None and (last[0] == version or now - last[1] < FANOUT_MIN_GAP):
            return 0
        self._fanned[e.index] = (version, now)
        woken = 0
        for peer in sorted(self.peers(key)):
            pe = self._entries[peer]
            if pe.running:
                pe.again = True
            else:
                if pe.handle is not None:
                    pe.handle.cancel()
                self._schedule_woken(peer, pe)
            woken += 1
        if woken:
            log.info(
                "poll HelmApp %s/%s: version %s is new in %s; polling the %d other HelmApp(s) on it now",
                *key,
                version,
                " ".join(p for p in e.index if p),
                woken,
                extra={"helmapp": f"{key[0]}/{key[1]}", "chartVersion": version},
            )
        return woken

    async def poll(self, key: Key, interval: float) -> str | None:
        """One poll: resolve, record ``lastPollingTriggered`` and ``Polled``, enqueue on a new version.
        Returns the result label (``new_version``, ``unchanged``, ``error``) or None if not polled."""
        return (await self._poll(key, interval))[0]

    async def _poll(self, key: Key, interval: float) -> tuple[str | None, str | None]:
        """:meth:`poll`, also returning the version it resolved (None when it resolved none)."""
        obj = await self.kube.get_helmapp(*key)
        if obj is None:
            self.forget(key)
            return None, None
        # typed where it enters; lenient, so a spec the reconcile refuses is still polled as before. The
        # manifest as read stays for the Event reference and the status patch (stored shape).
        app = lenient_helmapp(obj)
        if polling_interval(app) <= 0:
            self.forget(key)
            return None, None
        started = self._now()
        t0 = time.monotonic()
        status = obj.get("status") or {}
        current = str(status.get("version") or "")
        try:
            version = await self.resolver.resolve(app, max_age=max(1.0, interval / 2))
        except PollError as exc:
            metrics.POLLS.labels("error").inc()
            metrics.POLL_SECONDS.observe(time.monotonic() - t0)
            message = f"cannot get a new chart version: {exc}"
            log.warning("poll HelmApp %s/%s: %s", *key, message)
            await self.kube.event(obj, "FailedToGetNewChartVersion", message, warning=True)
            await self._record(obj, started, ok=False, message=message)
            return "error", None
        metrics.POLL_SECONDS.observe(time.monotonic() - t0)
        result = "new_version" if version != current else "unchanged"
        metrics.POLLS.labels(result).inc()
        await self._record(obj, started, ok=True, message="")
        if result == "new_version":
            log.info(
                "poll HelmApp %s/%s: version %s matches %r (deployed: %s); reconciling",
                *key,
                version,
                app.spec.helm.version or "*",
                current or "none",
                extra={"helmapp": f"{key[0]}/{key[1]}", "chartVersion": version},
            )
            self.enqueue(key)
        return result, version

    async def _record(self, obj: Mapping[str, Any], started: datetime, *, ok: bool, message: str) -> None:
        """Merge-patches ``lastPollingTriggered``, and ``Polled`` only when it changes: the conditions list
        is replaced as a whole, so that patch is guarded by resourceVersion (one retry on a conflict), and
        leaving it out of the common case (same outcome as last time) keeps polls from ever racing the
        reconciler's status writes. When the status field is pruned, the time goes to an annotation
        instead (which the event filter ignores)."""
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        for _attempt in range(2):
            live = obj.get("status") or {}
            conds = {c.get("type"): c for c in live.get("conditions") or [] if isinstance(c, Mapping)}
            old = conds.get(POLLED) or {}
            cond = polled_condition(ok, message, old, self._now())
            body: dict[str, Any] = {"status": {"lastPollingTriggered": ts(started)}}
            guard: str | None = None
            if any(old.get(k, "") != cond[k] for k in ("status", "reason", "message")):
                guard = obj["metadata"].get("resourceVersion")
                body["status"]["conditions"] = with_condition(live.get("conditions"), cond)
            try:
                out = await self.kube.patch_status(ns, name, body, resource_version=guard)
            except Conflict:
                fresh = await self.kube.get_helmapp(ns, name)
                if fresh is None:
                    return
                obj = fresh
                continue
            if out is None:  # the HelmApp is gone
                return
            if "lastPollingTriggered" not in (out.get("status") or {}):
                with contextlib.suppress(Exception):
                    await self.kube.patch_annotations(ns, name, {LAST_POLL_ANNOTATION: ts(started)})
            return


__all__ = [
    "FANOUT_MIN_GAP",
    "JITTER",
    "LAST_POLL_ANNOTATION",
    "ChartVersions",
    "PollError",
    "Poller",
    "SourcesResolver",
    "VersionResolver",
    "index_key",
    "interval_seconds",
    "jittered",
    "last_polled",
    "next_poll_delay",
    "polled_condition",
    "polling_interval",
    "source_key",
]
