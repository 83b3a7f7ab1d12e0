"""Which releases each HelmApp deployed, per cluster, recorded where no tenant can write.

Clean-up (a renamed release, a cluster no longer targeted, deletion) must only ever touch releases this
HelmApp created. Helm's storage Secrets cannot say so: a tenant can plant a Secret with any labels in its own
namespace. So the controller keeps one ConfigMap per HelmApp in its own namespace, named from the HelmApp's
UID, listing ``(cluster, release namespace, release name)``. An entry is written before helm runs (a crash
cannot lose track of a release), removed once the release is gone, and the ConfigMap is deleted when the
finalizer completes. The controller is the only writer (one leader per shard, one worker per HelmApp), so
entries are cached after the first read; writes carry the resourceVersion read, and a conflict re-reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from helmops.api.objects import HelmApp

log = logging.getLogger("helmops.controller")

PREFIX = "helmops-ledger-"
DATA_KEY = "releases"
#: labels and annotations on the ledger ConfigMap, so an operator can tell which HelmApp it belongs to.
LEDGER_LABEL = "helmops.cattle.io/ledger"
HELMAPP_ANNOTATION = "helmops.cattle.io/helmapp"
UID_ANNOTATION = "helmops.cattle.io/helmapp-uid"
#: releases one HelmApp may have recorded: across all its clusters, and on one cluster.
MAX_ENTRIES = 1000
MAX_PER_CLUSTER = 16


@dataclass(frozen=True, order=True)
class Entry:
    """One release a HelmApp deployed: the Fleet cluster name (``local`` without targets) and the release."""

    cluster: str
    namespace: str
    name: str

    def describe(self) -> str:
        return f"release {self.name} in namespace {self.namespace} on cluster {self.cluster}"


class LedgerFull(Exception):
    """Recording one more release would exceed the bound; the message is meant for the status."""


class LedgerConflict(Exception):
    """The ConfigMap changed since it was read."""


class LedgerStore(Protocol):
    """The ConfigMap I/O (helmops.kubeio.kube.Kube implements it)."""

    async def read_ledger(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """(data, resourceVersion), or None when there is none."""
        ...

    async def write_ledger(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        """Creates (resource_version None) or replaces the ConfigMap; the new resourceVersion. Raises
        LedgerConflict when it changed or already exists."""
        ...

    async def delete_ledger(self, namespace: str, name: str) -> None: ...

    async def list_ledgers(self, namespace: str) -> dict[str, tuple[dict[str, str], str]]:
        """Every ledger ConfigMap in ``namespace``: name → (data, resourceVersion)."""
        ...


def ledger_name(uid: str) -> str:
    """A valid ConfigMap name from the HelmApp UID (which the API server assigns; a hash keeps any length)."""
    return PREFIX + hashlib.sha256(uid.encode()).hexdigest()[:40]


def parse(data: Mapping[str, str]) -> frozenset[Entry]:
    """Entries from the ConfigMap data; anything malformed is skipped (only the controller writes it)."""
    raw = data.get(DATA_KEY) or "[]"
    try:
        items = json.loads(raw)
    except ValueError:
        log.warning("ledger: unreadable %s entry ignored", DATA_KEY)
        return frozenset()
    out: set[Entry] = set()
    for item in items if isinstance(items, list) else []:
        if isinstance(item, list) and len(item) == 3 and all(isinstance(x, str) and x for x in item):
            out.add(Entry(item[0], item[1], item[2]))
    return frozenset(out)


def render(entries: Iterable[Entry]) -> dict[str, str]:
    rows = [[e.cluster, e.namespace, e.name] for e in sorted(entries)]
    return {DATA_KEY: json.dumps(rows, separators=(",", ":"))}


def check_bounds(entries: Iterable[Entry], new: Entry) -> str | None:
    """Why ``new`` cannot be recorded next to ``entries`` (None: it can)."""
    have = set(entries)
    if new in have:
        return None
    if len(have) >= MAX_ENTRIES:
        return (
            f"this HelmApp has already recorded {len(have)} releases (limit {MAX_ENTRIES}); "
            f"{new.describe()} not installed"
        )
    on_cluster = sum(1 for e in have if e.cluster == new.cluster)
    if on_cluster >= MAX_PER_CLUSTER:
        return (
            f"this HelmApp has already recorded {on_cluster} releases on cluster {new.cluster} "
            f"(limit {MAX_PER_CLUSTER}) that could not be uninstalled yet; {new.describe()} not installed"
        )
    return None


@dataclass
class _Cached:
    entries: frozenset[Entry]
    version: str | None  # None: no ConfigMap yet


class Ledger:
    """The ledger of every HelmApp, kept in ``namespace`` through ``store``."""

    def __init__(self, store: LedgerStore, namespace: str) -> None:
        self.store, self.namespace = store, namespace
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: every ledger at the first read, from one LIST (ledger name → entries); a HelmApp's entry is taken
        #: out at its first read. None: not listed yet; False: not usable (the LIST failed, or evict()).
        self._snapshot: dict[str, _Cached] | bool | None = None
        self._snapshot_lock = asyncio.Lock()

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    async def _listed(self) -> dict[str, _Cached] | None:
        """The start-up snapshot. One LIST replaces a GET per HelmApp — at start-up, and for every HelmApp
        created later, whose ledger cannot exist unless this process wrote it (then it is cached): the
        controller is the only writer of its shard's ledgers. A ledger another shard wrote after the LIST
        (a HelmApp that changed shards) reads as empty at first; the first write for it then conflicts with
        the existing ConfigMap and re-reads it, and a release of it found on a cluster is recorded anew."""
        if self._snapshot is None:
            async with self._snapshot_lock:
                if self._snapshot is None:
                    try:
                        found = await self.store.list_ledgers(self.namespace)
                    except Exception as exc:
                        log.info(
                            "ledger: listing %s failed (%s); each HelmApp's ledger is read alone", self.namespace, exc
                        )
                        self._snapshot = False
                    else:
                        self._snapshot = {name: _Cached(parse(data), rv) for name, (data, rv) in found.items()}
        return self._snapshot if isinstance(self._snapshot, dict) else None

    async def _load(self, uid: str, *, fresh: bool = False) -> _Cached:
        cached = self._cache.get(uid)
        if cached is None and not fresh and (listed := await self._listed()) is not None:
            cached = listed.pop(ledger_name(uid), None) or _Cached(frozenset(), None)
            self._cache[uid] = cached
            return cached
        if cached is None or fresh:
            found = await self.store.read_ledger(self.namespace, ledger_name(uid))
            cached = _Cached(frozenset(), None) if found is None else _Cached(parse(found[0]), found[1])
            self._cache[uid] = cached
        return cached

    async def entries(self, uid: str) -> frozenset[Entry]:
        async with self._lock(uid):
            return (await self._load(uid)).entries

    async def _change(self, uid: str, helmapp: str, add: Entry | None, remove: frozenset[Entry]) -> None:
        for attempt in range(3):
            cached = await self._load(uid, fresh=attempt > 0)
            if add is not None and (why := check_bounds(cached.entries, add)) is not None:
                raise LedgerFull(why)
            entries = (cached.entries - remove) | ({add} if add is not None else set())
            if entries == cached.entries:
                return
            annotations = {HELMAPP_ANNOTATION: helmapp, UID_ANNOTATION: uid}
            try:
                version = await self.store.write_ledger(
                    self.namespace, ledger_name(uid), render(entries), annotations, cached.version
                )
            except LedgerConflict:
                log.info("ledger of HelmApp %s changed under us; re-reading", helmapp)
                continue
            self._cache[uid] = _Cached(frozenset(entries), version)
            return
        raise LedgerConflict(f"ledger of HelmApp {helmapp} kept changing")

    async def record(self, uid: str, helmapp: str, entry: Entry) -> None:
        """Before helm acts on ``entry``. Raises LedgerFull when the bound is reached."""
        async with self._lock(uid):
            await self._change(uid, helmapp, entry, frozenset())

    async def forget(self, uid: str, helmapp: str, *entries: Entry) -> None:
        """After the release is gone (or turned out not to be this HelmApp's)."""
        async with self._lock(uid):
            await self._change(uid, helmapp, None, frozenset(entries))

    async def drop(self, uid: str) -> None:
        """When the finalizer completes: the whole ConfigMap goes."""
        async with self._lock(uid):
            await self.store.delete_ledger(self.namespace, ledger_name(uid))
            self._cache.pop(uid, None)
        self._locks.pop(uid, None)

    def evict(self, uid: str) -> None:
        """Forget the cached copy (e.g. the HelmApp left this process' shard). The start-up snapshot is
        dropped too: it no longer tells whether a ledger it lacks exists."""
        self._cache.pop(uid, None)
        self._snapshot = False


class MemoryLedgerStore:
    """A ledger store in memory: for unit tests and tools that run no controller."""

    def __init__(self) -> None:
        self.maps: dict[tuple[str, str], tuple[dict[str, str], dict[str, str], int]] = {}

    async def read_ledger(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        found = self.maps.get((namespace, name))
        return None if found is None else (dict(found[0]), str(found[2]))

    async def write_ledger(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        found = self.maps.get((namespace, name))
        if (found is None) != (resource_version is None) or (found and str(found[2]) != resource_version):
            raise LedgerConflict(name)
        version = (found[2] if found else 0) + 1
        self.maps[(namespace, name)] = (dict(data), dict(annotations), version)
        return str(version)

    async def delete_ledger(self, namespace: str, name: str) -> None:
        self.maps.pop((namespace, name), None)

    async def list_ledgers(self, namespace: str) -> dict[str, tuple[dict[str, str], str]]:
        return {name: (dict(data), str(v)) for (ns, name), (data, _, v) in self.maps.items() if ns == namespace}


def helmapp_uid(obj: HelmApp) -> str:
    """The key of a HelmApp's ledger: its UID (namespace/name only for objects that have none, in tests)."""
    meta = obj.metadata
    return meta.uid or f"{meta.namespace}/{meta.name}"


__all__ = [
    "MAX_ENTRIES",
    "MAX_PER_CLUSTER",
    "Entry",
    "Ledger",
    "LedgerConflict",
    "LedgerFull",
    "LedgerStore",
    "MemoryLedgerStore",
    "helmapp_uid",
    "ledger_name",
]
