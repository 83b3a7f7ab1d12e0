"""Drift detection: deployed objects compared with their release's manifest, when they change.

Two paths feed one comparison. The *check* is the reference: one cluster-wide list of helmops' deployed
release Secrets (label ``helmops.cattle.io/managed-by=helmops,status=deployed``; manifests are decoded once
per revision) and one cluster-wide list per kind found in those manifests (its REST path from the cluster's
discovery, ``helmops.kubeio.mapping``), filtered by Helm's label ``app.kubernetes.io/managed-by=Helm``; it
runs every ``HELMOPS_DRIFT_CHECK_PERIOD`` (60s) whatever happens, so nothing depends on a watch staying up.
The *watches* (``helmops.drift.watchers``, ``HELMOPS_DRIFT_WATCH``, on by default) make it prompt: one watch
per kind the releases deploy (not per object: a fixed number of connections however many HelmApps there
are, and no object cache), each event compared alone with the object's manifest; only an event that
changes what drifted (drift began, changed or ended) starts a check, 0.2 s later and at most one per
second. An event of a release helm is working on is not drift.

A watch on the deployed release records keeps the object index (and the watched kinds) current between checks,
one release at a time (``helmops.drift.releases``): an install or upgrade decodes that one record and swaps its
objects in, with no list, so a burst of N installs costs N decodes rather than a full O(N) check every 5 s. A
gap in that watch, an oversized or undecodable record, or a flood of events starts a full check
(``RELEASE_REFRESH``) instead. The new release's objects are indexed, not compared: helm has just applied
them, a GET per object would cost what the index saves, their kind's watch compares every later change, and
the periodic check compares the rest.

Only fields the chart set are compared (the manifest's fields; ``metadata`` only for labels and
annotations; never ``status``), so values the API server defaults are not drift. ``diff.comparePatches``
entries matching an object (kind/apiVersion/namespace/name, empty = any) remove the fields named by their
``remove``/``ignore`` operations' paths and their ``jsonPointers`` from both sides before comparing.

A newly drifted HelmApp is enqueued after ``HELMOPS_DRIFT_DELAY`` (1s; the watches already coalesce an
edit's events), so a burst of edits is handled once. Its reconcile reports it as ``Modified`` naming the
resources, and with ``correctDrift.enabled`` the worker then rolls the release back to its current revision
(``reconcile/rollback.py``, run by the executor).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from helmops.api.keys import LOCAL, Key
from helmops.api.objects import HelmApp
from helmops.api.spec import HelmAppSpec
from helmops.drift.compare import (
    HELM_MANAGED_SELECTOR,
    MAX_NAMED,
    RELEASE_SELECTOR,
    Modified,
    compare_object,
    compare_release,
)
from helmops.drift.live import list_live
from helmops.drift.releases import Manifest as _Manifest
from helmops.drift.releases import (
    ReleaseEvents,
    ReleaseIndex,
    SecretView,
    apply_release_event,
    attributed,
    listed_manifests,
    listed_secret,
    object_kinds,
    readable_objects,
    release_namespaces,
    secret_view,
)
from helmops.drift.watchers import KindWatches
from helmops.kubeio import rest
from helmops.kubeio.client import core_v1
from helmops.kubeio.mapping import Resource, RestMapper
from helmops.kubeio.watch import OVERSIZED, WatchEvent
from helmops.reconcile.manifest import ObjectRef, object_ref
from helmops.reconcile.release import owner_value
from helmops.reconcile.storage import decode_release  # what drift decodes with (in .releases)
from helmops.runtime import metrics

log = logging.getLogger("helmops.controller")

#: kinds remembered for once-only log lines: the manifests they come from may be tenant-written.
MAX_WARNED = 1024
#: a watch event that shows drift starts a check after this long (the events of one edit arrive together)...
WATCH_DEBOUNCE = 0.2
#: ...and at most one watch-started check runs per this many seconds (a burst costs one or two checks).
WATCH_MIN_INTERVAL = 1.0
#: a release record event the monitor cannot apply alone (a gap in the watch, an undecodable record) starts a
#: full check this long after the last one, so a rollout of many releases costs a check per this many seconds.
RELEASE_REFRESH = 5.0
#: release record events waiting to be applied; more at once (a flood of tenant Secrets): one full check instead.
MAX_PENDING_RELEASES = 1024
#: helm's release records, watched to keep the index current between checks.
SECRETS = Resource("", "v1", "Secret", "secrets", True)


@dataclass
class _Tracked:
    spec: HelmAppSpec
    #: ``diff.comparePatches`` in the manifest form :func:`compare_release` reads.
    compare_patches: list[dict[str, Any]]
    modified: tuple[Modified, ...] = ()
    resources: int = 0
    pending: asyncio.TimerHandle | None = None


class DriftMonitor:
    """Periodic drift checks of every deployed release of the HelmApps this process reconciles."""

    def __init__(
        self,
        api: Any,
        enqueue_after: Callable[[Key, float], None],
        *,
        period: float,
        delay: float,
        rng: random.Random | None = None,
        busy: Callable[[str, str], bool] | None = None,
        watch: bool = True,
        cluster: str = LOCAL,
        gauge: Callable[[], None] | None = None,
    ) -> None:
        self._api = api
        #: which cluster this monitor compares (LOCAL or the Fleet Cluster's namespace/name): logs name it.
        self.cluster = cluster
        #: replaces the drifted-HelmApps gauge update when several monitors share it (one per cluster).
        self._gauge = gauge
        self._failing = False
        #: per-kind watches making detection prompt; None: the periodic check only.
        self.watches: KindWatches | None = None
        self.release_watch: KindWatches | None = None
        self._watch = watch
        #: object → the releases (owner, manifest, desired object) that deploy it: built by each check, kept
        #: current between checks by the release records' watch events (under ``_check_lock`` as well).
        self._index = ReleaseIndex()
        #: the kinds the watches should follow: a check's, plus those of releases indexed since.
        self._kinds: set[Resource] = set()
        #: release record events not applied yet (the latest per Secret; bounded), applied by one task.
        self._release_events = ReleaseEvents(self._apply_release_events, MAX_PENDING_RELEASES)
        self._check_lock = asyncio.Lock()
        self._soon: asyncio.TimerHandle | None = None
        self._soon_task: asyncio.Task[None] | None = None
        self._last_check = 0.0
        #: an event came while a watch-started check ran: the debounce of the check to run after it.
        self._again: float | None = None
        #: (namespace, release) → True while helm works on it: mid-upgrade objects are not drift.
        self._busy = busy
        self._enqueue_after = enqueue_after
        self.period, self.delay = period, delay
        self._rng = rng or random.Random()
        self._tracked: dict[Key, _Tracked] = {}
        self._owners: dict[str, Key] = {}
        self._manifests: dict[str, _Manifest] = {}
        self._task: asyncio.Task[None] | None = None
        #: the local cluster's REST mapping (kind → plural, namespaced), from its discovery.
        self.mapper = RestMapper()
        #: kinds the cluster does not serve: said once (asked again later: a CRD may be installed since).
        self._unknown_kinds: set[tuple[str, str]] = set()
        #: kinds whose list failed (e.g. RBAC without list rights): warned once, then quietly retried.
        self._list_failed: set[tuple[str, str]] = set()
        #: may the identity a HelmApp acts as get this resource (key, group, plural, namespace)? Objects it
        #: may not are left out of the comparison: the release record naming them is writable by whoever can
        #: write Secrets in the release namespace, and the lists above are read with the controller's rights.
        #: None: every object is compared (no serviceAccounts in play).
        self.can_read: Callable[[Key, str, str, str], Awaitable[bool]] | None = None

    @property
    def api(self) -> Any:
        """The API client of the cluster this monitor compares."""
        return self._api

    # --- what the controller tells us ---
    def update(self, helmapp: HelmApp) -> None:
        """Every watch event: remembers the spec (comparePatches, correctDrift, paused)."""
        key = helmapp.key
        spec = helmapp.spec
        if helmapp.metadata.deletion_timestamp:
            self.forget(key)
            return
        patches = [p.to_dict() for p in (spec.diff.compare_patches if spec.diff else None) or ()]
        t = self._tracked.get(key)
        if t is None:
            self._tracked[key] = _Tracked(spec, patches)
            self._owners[owner_value(*key)] = key
        else:
            t.spec, t.compare_patches = spec, patches
            if spec.paused and t.modified:
                t.modified = ()  # Fleet: paused deployments clear drift

    def forget(self, key: Key) -> None:
        t = self._tracked.pop(key, None)
        self._owners.pop(owner_value(*key), None)
        if t is not None and t.pending is not None:
            t.pending.cancel()
        self._refresh_gauge()

    def modified(self, key: Key) -> tuple[Modified, ...]:
        t = self._tracked.get(key)
        return t.modified if t is not None else ()

    def resources(self, key: Key) -> int:
        t = self._tracked.get(key)
        return t.resources if t is not None else 0

    def cleared(self, key: Key) -> None:
        """After a successful correction: nothing drifted until the next check says otherwise."""
        t = self._tracked.get(key)
        if t is not None:
            t.modified = ()
        self._refresh_gauge()

    # --- the loop ---
    def start(self) -> None:
        if self.period > 0 and self._task is None:
            if self._watch:
                self.watches = KindWatches(self._api, self.on_event, HELM_MANAGED_SELECTOR, cluster=self.cluster)
                self.release_watch = KindWatches(
                    self._api, self.on_release_event, RELEASE_SELECTOR, cluster=self.cluster
                )
                self.release_watch.sync([SECRETS])
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="helmops-drift")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._soon_task is not None:
            self._soon_task.cancel()
            await asyncio.gather(self._soon_task, return_exceptions=True)
            self._soon_task = None
        await self._release_events.stop()
        for w in (self.watches, self.release_watch):
            if w is not None:
                await w.stop()
        self.watches = self.release_watch = None
        for t in self._tracked.values():
            if t.pending is not None:
                t.pending.cancel()

    async def _loop(self) -> None:
        first = True
        while True:
            # the first check comes early: it starts the watches
            await asyncio.sleep(
                min(self.period, 2.0) if first and self._watch else self.period * (1 + 0.1 * self._rng.uniform(-1, 1))
            )
            first = False
            await self._guarded_check()

    # --- watch events ---
    def on_event(self, res: Resource, event: WatchEvent) -> None:
        """One watched object changed: compare it alone, and check the cluster if it drifted (or stopped
        drifting). Events of objects no tracked release deploys, or of releases helm is working on, cost a
        dictionary lookup."""
        if event.type == OVERSIZED or event.object is None:
            self._check_soon()
            return
        obj = event.object
        ref = object_ref({**obj, "apiVersion": res.api_version, "kind": res.kind}, "", bool(res.namespaced))
        for owner, m, desired in self._index.get(ref, ()):
            t = self._tracked.get(owner)
            if t is None or t.spec.paused:
                continue
            if self._busy is not None and self._busy(m.release_namespace, m.release_name):
                continue
            cmp = t.compare_patches
            live = None if event.type == "DELETED" else obj
            known = next((x for x in t.modified if x.ref == ref), None)
            if compare_object(ref, desired, live, cmp) != known:  # drift began, changed or ended
                self._check_soon()
                return

    def on_release_event(self, _res: Resource, event: WatchEvent) -> None:
        """A deployed release record changed: index that release's objects now (new kinds get watched then),
        without listing anything. A gap in the watch or an oversized record: a full check soon instead."""
        if not self._tracked:
            return
        secret = secret_view(event.object) if event.type != OVERSIZED and event.object is not None else None
        if secret is None:
            self._check_soon(RELEASE_REFRESH, RELEASE_REFRESH)
        elif attributed(secret, self._owners, self._namespaces) is None:
            return  # not a tracked HelmApp's, or planted where it never deploys: a check skips it too
        elif not self._release_events.submit(event.type, secret):
            self._check_soon(RELEASE_REFRESH, RELEASE_REFRESH)

    def _namespaces(self, key: Key) -> frozenset[str] | None:
        t = self._tracked.get(key)
        return release_namespaces(t.spec) if t is not None else None

    async def _apply_release_events(self, batch: list[tuple[str, SecretView]]) -> None:
        """Release events applied to the index, never while a check runs: one that started first has replaced
        the index when these apply on top of it, one that starts later lists them."""
        fallback = False
        async with self._check_lock:
            known = len(self._kinds)
            for event_type, secret in batch:
                owner = attributed(secret, self._owners, self._namespaces)
                if owner is None:
                    continue  # forgotten since the event came
                try:
                    kinds = await apply_release_event(
                        self._index, event_type, secret, owner, self._scope, partial(self._readable, owner)
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a check reads it again, and says what is wrong
                    log.debug("drift: release Secret %s/%s not indexed: %s", secret.namespace, secret.name, exc)
                    kinds = None
                if kinds is None:
                    fallback = True
                else:
                    self._kinds.update(kinds)
            if len(self._kinds) != known and self.watches is not None:
                self.watches.sync(self._kinds)
        if fallback:
            self._check_soon(RELEASE_REFRESH, RELEASE_REFRESH)

    def _check_soon(self, debounce: float | None = None, min_interval: float | None = None) -> None:
        """One check at the earliest time any caller asked for; never two running at once."""
        debounce = WATCH_DEBOUNCE if debounce is None else debounce
        min_interval = WATCH_MIN_INTERVAL if min_interval is None else min_interval
        if self._soon_task is not None and not self._soon_task.done():
            # the running check may have read this object before the change: one more check after it
            self._again = min(self._again or debounce, debounce)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(debounce, self._last_check + min_interval - loop.time())
        if self._soon is not None:
            if self._soon.when() <= when:
                return
            self._soon.cancel()

        def fire() -> None:
            self._soon = None
            self._soon_task = loop.create_task(self._watched_check(), name="helmops-drift-watched-check")

        self._soon = loop.call_at(when, fire)

    async def _guarded_check(self) -> None:
        """A check that never raises: a failure is said once per outage (WARNING), then at DEBUG."""
        try:
            await self.check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            reason = getattr(exc, "reason", None) or text or type(exc).__name__
            if not self._failing:
                log.warning("drift check failed on cluster %s (retried every check): %s", self.cluster, reason)
            else:
                log.debug("drift check failed on cluster %s again: %s", self.cluster, reason)
            self._failing = True
        else:
            if self._failing:
                log.info("drift checks on cluster %s work again", self.cluster)
            self._failing = False

    async def _watched_check(self) -> None:
        await self._guarded_check()
        again, self._again = self._again, None
        if again is not None:
            self._soon_task = None
            self._check_soon(again)

    async def _scope(self, api_version: str, kind: str) -> Resource | None:
        """The discovered resource, or None for kinds the server does not serve."""
        try:
            res = await self.mapper.resource(self._api, api_version, kind)
        except Exception:
            res = None
        if res is None:
            if (api_version, kind) not in self._unknown_kinds:
                if len(self._unknown_kinds) >= MAX_WARNED:
                    self._unknown_kinds.clear()  # only the once-per-kind log line depends on it
                self._unknown_kinds.add((api_version, kind))
                log.info("drift: kind %s %s is not served by the cluster; not compared", api_version, kind)
            return None
        self._unknown_kinds.discard((api_version, kind))
        return res

    def _core(self) -> Any:
        return core_v1(self._api)

    async def _list_raw(self, res: Resource, label_selector: str) -> bytes:
        """The unparsed list of ``res`` in every namespace (parsed by the caller, bounded, off the loop)."""
        return await rest.list_raw(self._api, res.path(), label_selector)

    async def _releases(self) -> list[_Manifest]:
        listing = await self._core().list_secret_for_all_namespaces(label_selector=RELEASE_SELECTOR)
        # revisions indexed from watch events since the last check are not decoded again
        cache = {m.key: m for m in self._index.manifests()} | self._manifests
        found, self._manifests = await listed_manifests(
            (listed_secret(item) for item in listing.items or []), self._owners, self._namespaces, cache
        )
        return found

    async def check(self) -> dict[Key, tuple[Modified, ...]]:
        """One pass over every tracked HelmApp's deployed release. Returns what drifted, by HelmApp."""
        async with self._check_lock:
            self._last_check = asyncio.get_running_loop().time()
            return await self._check()

    async def _check(self) -> dict[Key, tuple[Modified, ...]]:
        if not self._tracked:
            self._index, self._kinds = ReleaseIndex(), set()
            if self.watches is not None:
                self.watches.sync(())
            return {}
        releases = await self._releases()
        kinds: dict[tuple[str, str], Resource | None] = {}
        for k in {k: None for m in releases for k in object_kinds(m)}:
            kinds[k] = await self._scope(*k)
        live, failed = await list_live(kinds, self._list_raw, self._list_failed)

        def scoped(api_version: str, kind: str) -> bool | None:
            res = kinds.get((api_version, kind))
            if res is None or (api_version, kind) in failed:
                return None
            return bool(res.namespaced)

        result: dict[Key, tuple[Modified, ...]] = {}
        index = ReleaseIndex()
        for m in releases:
            owner = self._owners.get(m.owner)
            if owner is None or owner not in self._tracked:
                continue
            t = self._tracked[owner]
            objects = await self._readable(owner, m, kinds)
            index.add(owner, m, objects, kinds)
            if t.spec.paused or (self._busy is not None and self._busy(m.release_namespace, m.release_name)):
                continue
            metrics.DRIFT_CHECKS.inc()
            cmp = t.compare_patches
            found = tuple(compare_release(objects, live, m.release_namespace, cmp, scoped))
            t.resources = len(m.objects)
            result[owner] = found
            self._record(owner, t, found)
        self._index = index
        self._kinds = {res for res in kinds.values() if res is not None}
        if self.watches is not None:
            self.watches.sync(self._kinds)
        self._refresh_gauge()
        return result

    async def _readable(
        self, owner: Key, m: _Manifest, kinds: Mapping[tuple[str, str], Resource | None]
    ) -> list[dict[str, Any]]:
        """The objects of ``m`` that ``owner``'s identity may get (all of them without ``can_read``)."""
        return await readable_objects(self.can_read, owner, m, kinds)

    def _record(self, key: Key, t: _Tracked, found: tuple[Modified, ...]) -> None:
        if found == t.modified:
            return
        before = t.modified
        t.modified = found
        if found:
            metrics.DRIFT_DETECTIONS.inc()
            log.info(
                "drift: HelmApp %s/%s%s: %s",
                *key,
                "" if self.cluster == LOCAL else f" on cluster {self.cluster}",
                "; ".join(m.describe() for m in found[:MAX_NAMED]),
                extra={"helmapp": f"{key[0]}/{key[1]}"},
            )
        elif before:
            log.info(
                "drift: HelmApp %s/%s%s no longer drifted",
                *key,
                "" if self.cluster == LOCAL else f" on cluster {self.cluster}",
            )
        if t.pending is None:
            # A delayed enqueue: a burst of edits within the delay is handled by one reconcile.
            loop = asyncio.get_running_loop()

            def fire() -> None:
                t.pending = None
                self._enqueue_after(key, 0.0)

            t.pending = loop.call_later(self.delay if found else 0.0, fire)

    @property
    def drifted_count(self) -> int:
        """HelmApps with drifted objects on this cluster."""
        return sum(1 for t in self._tracked.values() if t.modified)

    def _refresh_gauge(self) -> None:
        if self._gauge is not None:
            self._gauge()
        else:
            metrics.DRIFT_MODIFIED.set(self.drifted_count)

    async def close(self) -> None:
        await self.stop()
        self.mapper.forget()


__all__ = ["DriftMonitor", "Modified", "ObjectRef", "decode_release", "release_namespaces"]
