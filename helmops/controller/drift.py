"""Drift detection: deployed objects compared with their release's manifest, on a timer.

Design (why a timer and not per-object watches): one check costs a fixed number of API calls however
many HelmApps there are — one cluster-wide list of helmops' deployed release Secrets (label
``helmops.cattle.io/managed-by=helmops,status=deployed``; manifests are decoded once per revision) and one
cluster-wide list per kind found in those manifests, filtered by Helm's label
``app.kubernetes.io/managed-by=Helm``. Watches would notice edits sooner but hold one connection per kind
open forever and need a cache of every object; the check period (``HELMOPS_DRIFT_CHECK_PERIOD``, 60s)
bounds detection time instead.

Only fields the chart set are compared (the manifest's fields; ``metadata`` only for labels and
annotations; never ``status``), so values the API server defaults are not drift. ``diff.comparePatches``
entries matching an object (kind/apiVersion/namespace/name, empty = any) remove the fields named by their
``remove``/``ignore`` operations' paths and their ``jsonPointers`` from both sides before comparing.

A newly drifted HelmApp is enqueued after ``HELMOPS_DRIFT_DELAY`` (5s, as Fleet's agent), so a burst of
edits is handled once. Its reconcile reports it as ``Modified`` naming the resources, and with
``correctDrift.enabled`` the worker then rolls the release back to its current revision
(``reconcile/rollback.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import gzip
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from helmops.controller import metrics
from helmops.kubeio.bounded import loads as bounded_loads

log = logging.getLogger("helmops.controller")

Key = tuple[str, str]

HELM_MANAGED_SELECTOR = "app.kubernetes.io/managed-by=Helm"
RELEASE_SELECTOR = "owner=helm,status=deployed,helmops.cattle.io/managed-by=helmops"
OWNER_LABEL = "helmops.cattle.io/helmapp"
#: at most this many drifted resources are named in status (Fleet: 10 non-ready resources).
MAX_NAMED = 10


# --- pure: the manifest ----------------------------------------------------------------------------
def decode_release(secret_value_b64: str) -> dict[str, Any]:
    """A Helm storage Secret's ``release`` value (base64 as the API returns it) → the release JSON.

    Helm stores base64(gzip(JSON)) in the Secret, which the API base64-encodes once more.  A tenant can
    write such a Secret, so decoding is bounded (:mod:`helmops.reconcile.storage`): an oversized or
    malformed record raises ``BadRelease`` (a ``ValueError``) instead of allocating gigabytes."""
    from helmops.reconcile.storage import decode_release as bounded_decode_release  # no import cycle at load

    return bounded_decode_release(secret_value_b64)


def encode_release(record: Mapping[str, Any]) -> str:
    """The inverse of :func:`decode_release`: a value for a Helm storage Secret's ``release`` key."""
    raw = gzip.compress(json.dumps(record, separators=(",", ":")).encode())
    return base64.b64encode(base64.b64encode(raw)).decode()


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a rendered manifest (``List`` kinds flattened; empty documents skipped)."""
    out: list[dict[str, Any]] = []
    try:
        docs = list(yaml.safe_load_all(manifest or ""))
    except RecursionError:  # PyYAML recurses: a tenant's chart can render any depth; nothing to compare
        return out
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            out.extend(i for i in doc["items"] if isinstance(i, dict) and i.get("kind"))
        else:
            out.append(doc)
    return out


@dataclass(frozen=True, order=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def display(self) -> str:
        """Fleet's resource naming: ``configmap.v1 ns/name`` (kind lower-cased, then the apiVersion)."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind.lower()}.{self.api_version.replace('/', '.')} {where}"


@dataclass(frozen=True)
class Modified:
    """One drifted resource: ``missing`` (deleted behind Helm's back) or the JSON pointers that differ."""

    ref: ObjectRef
    missing: bool = False
    paths: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.missing:
            return f"{self.ref.display()} missing"
        return f"{self.ref.display()} modified {', '.join(self.paths[:5])}{' …' if len(self.paths) > 5 else ''}"

    def status_entry(self) -> dict[str, Any]:
        """Fleet's ``modifiedStatus`` entry shape."""
        entry: dict[str, Any] = {
            "kind": self.ref.kind,
            "apiVersion": self.ref.api_version,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
        }
        if self.missing:
            entry["missing"] = True
        else:
            entry["patch"] = json.dumps({"changed": list(self.paths)}, separators=(",", ":"))
        return entry


# --- pure: comparePatches --------------------------------------------------------------------------
def _matches(value: Any, want: Any) -> bool:
    return not want or str(value) == str(want)


def ignored_pointers(ref: ObjectRef, compare_patches: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The JSON pointers ``diff.comparePatches`` hides for this object."""
    found: list[str] = []
    for p in compare_patches or ():
        if not isinstance(p, Mapping):
            continue
        if not (
            _matches(ref.kind, p.get("kind"))
            and _matches(ref.api_version, p.get("apiVersion"))
            and _matches(ref.namespace, p.get("namespace"))
            and _matches(ref.name, p.get("name"))
        ):
            continue
        for op in p.get("operations") or ():
            if isinstance(op, Mapping) and str(op.get("op") or "").lower() in ("remove", "ignore") and op.get("path"):
                found.append(str(op["path"]))
        found.extend(str(ptr) for ptr in p.get("jsonPointers") or () if ptr)
    return found


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def remove_pointer(obj: Any, pointer: str) -> None:
    """Deletes the field at a JSON pointer (RFC 6901) in place; absent paths are fine."""
    if not pointer.startswith("/"):
        return
    parts = [_unescape(t) for t in pointer[1:].split("/")]
    node = obj
    for part in parts[:-1]:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    last = parts[-1]
    if isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        del node[int(last)]


# --- pure: comparison ------------------------------------------------------------------------------
def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _empty(v: Any) -> bool:
    return v is None or v == {} or v == [] or v == ""


def _scalar_equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    # YAML numbers vs. the API's strings for int-or-string fields (ports, quantities written as ints).
    return isinstance(a, int | float | str) and isinstance(b, int | float | str) and str(a) == str(b)


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """JSON pointers where ``live`` does not hold what ``desired`` sets. Keys only ``live`` has (server
    defaults, other controllers' fields) are not differences; lists are compared element by element and
    must have the same length."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [] if _empty(desired) and _empty(live) else [path or "/"]
        out: list[str] = []
        for k, v in desired.items():
            sub = f"{path}/{_escape(str(k))}"
            if k not in live:
                if not _empty(v):
                    out.append(sub)
                continue
            out.extend(differences(v, live[k], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [] if _empty(desired) and _empty(live) else [path or "/"]
        out = []
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(d, lv, f"{path}/{i}"))
        return out
    if desired is None:
        return []
    return [] if _scalar_equal(desired, live) else [path or "/"]


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What is compared of an object: everything but ``status`` and ``metadata`` other than labels and
    annotations (names, namespaces and server bookkeeping are not drift)."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    meta = obj.get("metadata") or {}
    kept = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        out["metadata"] = kept
    return out


def compare_object(
    ref: ObjectRef,
    desired: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    compare_patches: Iterable[Mapping[str, Any]] | None = None,
) -> Modified | None:
    """None when ``live`` holds every field ``desired`` sets (after comparePatches); else what drifted."""
    if live is None:
        return Modified(ref, missing=True)
    d, lv = comparable(desired), comparable(live)
    pointers = ignored_pointers(ref, compare_patches)
    for ptr in pointers:
        remove_pointer(d, ptr)
        remove_pointer(lv, ptr)
    paths = differences(d, lv)
    return Modified(ref, paths=tuple(paths)) if paths else None


def object_ref(obj: Mapping[str, Any], release_namespace: str, namespaced: bool = True) -> ObjectRef:
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or release_namespace) if namespaced else ""
    return ObjectRef(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""), ns, str(meta.get("name") or ""))


def compare_release(
    objects: Sequence[Mapping[str, Any]],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    release_namespace: str,
    compare_patches: Iterable[Mapping[str, Any]] | None = None,
    namespaced: Callable[[str, str], bool | None] = lambda _a, _k: True,
) -> list[Modified]:
    """Every drifted object of a release. ``namespaced(apiVersion, kind)`` is None for kinds the server
    does not know (skipped: nothing to compare with)."""
    found: list[Modified] = []
    patches = list(compare_patches or ())
    for obj in objects:
        scoped = namespaced(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
        if scoped is None:
            continue
        ref = object_ref(obj, release_namespace, scoped)
        m = compare_object(ref, obj, live.get(ref), patches)
        if m is not None:
            found.append(m)
    return sorted(found, key=lambda m: m.ref)


# --- I/O -------------------------------------------------------------------------------------------
def release_namespaces(spec: Mapping[str, Any]) -> frozenset[str]:
    """Where a HelmApp's releases may live: its own namespace fields and its targets' (else ``default``).

    Release Secrets carry a tenant-writable owner label; one found elsewhere was planted by someone who may
    write Secrets in a namespace this HelmApp never deploys to, and is not attributed to it."""
    found: set[str] = set()
    for part in [spec, *[t for t in spec.get("targets") or () if isinstance(t, Mapping)]]:
        for field_name in ("namespace", "defaultNamespace"):
            value = part.get(field_name)
            if isinstance(value, str) and value:
                found.add(value)
    return frozenset(found or {"default"})


@dataclass
class _Tracked:
    spec: Mapping[str, Any]
    modified: tuple[Modified, ...] = ()
    resources: int = 0
    pending: asyncio.TimerHandle | None = None


@dataclass
class _Manifest:
    key: str  # secret name + resourceVersion
    release_namespace: str
    release_name: str
    revision: int
    owner: str
    objects: list[dict[str, Any]] = field(default_factory=list)


def owner_value(namespace: str, name: str) -> str:
    from helmops.reconcile.release import owner_value as ov

    return ov(namespace, name)


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
    ) -> None:
        self._api = api
        #: (namespace, release) → True while helm works on it: mid-upgrade objects are not drift.
        self._busy = busy
        self._enqueue_after = enqueue_after
        self.period, self.delay = period, delay
        self._rng = rng or random.Random()
        self._tracked: dict[Key, _Tracked] = {}
        self._owners: dict[str, Key] = {}
        self._manifests: dict[str, _Manifest] = {}
        self._task: asyncio.Task[None] | None = None
        self._dyn: Any = None
        self._unknown_kinds: set[tuple[str, str]] = set()
        #: kinds whose list failed (e.g. RBAC without list rights): warned once, then quietly retried.
        self._list_failed: set[tuple[str, str]] = set()
        #: may the identity a HelmApp acts as get this resource (key, group, plural, namespace)? Objects it
        #: may not are left out of the comparison: the release record naming them is writable by whoever can
        #: write Secrets in the release namespace, and the lists above are read with the controller's rights.
        #: None: every object is compared (no serviceAccounts in play).
        self.can_read: Callable[[Key, str, str, str], Awaitable[bool]] | None = None

    # --- what the controller tells us ---
    def update(self, helmapp: Mapping[str, Any]) -> None:
        """Every watch event: remembers the spec (comparePatches, correctDrift, paused)."""
        meta = helmapp.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        spec = helmapp.get("spec") or {}
        if meta.get("deletionTimestamp"):
            self.forget(key)
            return
        t = self._tracked.get(key)
        if t is None:
            self._tracked[key] = _Tracked(spec)
            self._owners[owner_value(*key)] = key
        else:
            t.spec = spec
            if spec.get("paused") and t.modified:
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

    def should_correct(self, key: Key) -> bool:
        t = self._tracked.get(key)
        if t is None or not t.modified or t.spec.get("paused"):
            return False
        return bool((t.spec.get("correctDrift") or {}).get("enabled"))

    def correct_options(self, key: Key) -> tuple[bool, bool]:
        """(force, keepFailHistory) of correctDrift."""
        t = self._tracked.get(key)
        cd = (t.spec.get("correctDrift") or {}) if t is not None else {}
        return bool(cd.get("force")), bool(cd.get("keepFailHistory"))

    def cleared(self, key: Key) -> None:
        """After a successful correction: nothing drifted until the next check says otherwise."""
        t = self._tracked.get(key)
        if t is not None:
            t.modified = ()
        self._refresh_gauge()

    # --- the loop ---
    def start(self) -> None:
        if self.period > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="helmops-drift")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for t in self._tracked.values():
            if t.pending is not None:
                t.pending.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period * (1 + 0.1 * self._rng.uniform(-1, 1)))
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("drift check failed: %s", exc)

    async def _dynamic(self) -> Any:
        if self._dyn is None:
            from kubernetes.aio.dynamic import DynamicClient

            self._dyn = await DynamicClient(self._api)  # type: ignore[no-untyped-call]
        return self._dyn

    async def _scope(self, api_version: str, kind: str) -> Any:
        """The discovered resource, or None for kinds the server does not serve."""
        if (api_version, kind) in self._unknown_kinds:
            return None
        dyn = await self._dynamic()
        try:
            return await dyn.resources.get(api_version=api_version, kind=kind)
        except Exception:
            self._unknown_kinds.add((api_version, kind))
            log.info("drift: kind %s %s is not served by the cluster; not compared", api_version, kind)
            return None

    def _core(self) -> Any:
        from kubernetes.aio import client as kclient

        return kclient.CoreV1Api(self._api)

    async def _releases(self) -> list[_Manifest]:
        listing = await self._core().list_secret_for_all_namespaces(label_selector=RELEASE_SELECTOR)
        seen: dict[tuple[str, str], _Manifest] = {}
        fresh: dict[str, _Manifest] = {}
        for item in listing.items or []:
            meta = item.metadata
            labels = dict(meta.labels or {})
            owner = self._owners.get(str(labels.get(OWNER_LABEL) or ""))
            tracked = self._tracked.get(owner) if owner is not None else None
            if tracked is None or meta.namespace not in release_namespaces(tracked.spec):
                continue
            cache_key = f"{meta.namespace}/{meta.name}@{meta.resource_version}"
            m = self._manifests.get(cache_key)
            if m is None:
                try:
                    rel = decode_release((item.data or {}).get("release", ""))
                except (ValueError, OSError, json.JSONDecodeError) as exc:
                    log.warning("drift: cannot decode release Secret %s/%s: %s", meta.namespace, meta.name, exc)
                    continue
                m = _Manifest(
                    cache_key,
                    str(meta.namespace),
                    str(labels.get("name") or rel.get("name") or ""),
                    int(labels.get("version") or rel.get("version") or 0),
                    str(labels.get(OWNER_LABEL) or ""),
                    manifest_objects(str(rel.get("manifest") or "")),
                )
            fresh[cache_key] = m
            rk = (m.release_namespace, m.release_name)
            if rk not in seen or seen[rk].revision < m.revision:
                seen[rk] = m
        self._manifests = fresh
        return list(seen.values())

    async def check(self) -> dict[Key, tuple[Modified, ...]]:
        """One pass over every tracked HelmApp's deployed release. Returns what drifted, by HelmApp."""
        if not self._tracked:
            return {}
        releases = await self._releases()
        kinds: dict[tuple[str, str], Any] = {}
        for m in releases:
            for obj in m.objects:
                k = (str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
                if k not in kinds:
                    kinds[k] = await self._scope(*k)
        dyn = await self._dynamic() if any(kinds.values()) else None
        live: dict[ObjectRef, Mapping[str, Any]] = {}
        failed: set[tuple[str, str]] = set()
        for (api_version, kind), res in kinds.items():
            if res is None or dyn is None:
                continue
            try:
                # Raw bytes through the bounded loader, off the loop: the dynamic client's own parsing recurses,
                # so one tenant's deeply nested object would stop this kind's comparison for every tenant.
                resp = await dyn.get(res, label_selector=HELM_MANAGED_SELECTOR, serialize=False)
                listing = await asyncio.to_thread(bounded_loads, await resp.read())
            except Exception as exc:
                failed.add((api_version, kind))
                reason = getattr(exc, "reason", None) or exc
                if (api_version, kind) not in self._list_failed:
                    self._list_failed.add((api_version, kind))
                    log.warning("drift: cannot list %s %s (not compared until it can): %s", api_version, kind, reason)
                else:
                    log.debug("drift: cannot list %s %s: %s", api_version, kind, reason)
                continue
            self._list_failed.discard((api_version, kind))
            for item in (listing if isinstance(listing, dict) else {}).get("items") or []:
                if not isinstance(item, dict):
                    continue
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                live[object_ref(item, "", bool(res.namespaced))] = item

        def scoped(api_version: str, kind: str) -> bool | None:
            res = kinds.get((api_version, kind))
            if res is None or (api_version, kind) in failed:
                return None
            return bool(res.namespaced)

        result: dict[Key, tuple[Modified, ...]] = {}
        for m in releases:
            owner = self._owners.get(m.owner)
            if owner is None or owner not in self._tracked:
                continue
            t = self._tracked[owner]
            if t.spec.get("paused") or (self._busy is not None and self._busy(m.release_namespace, m.release_name)):
                continue
            metrics.DRIFT_CHECKS.inc()
            cmp = (t.spec.get("diff") or {}).get("comparePatches") or []
            objects = await self._readable(owner, m, kinds)
            found = tuple(compare_release(objects, live, m.release_namespace, cmp, scoped))
            t.resources = len(m.objects)
            result[owner] = found
            self._record(owner, t, found)
        self._refresh_gauge()
        return result

    async def _readable(
        self, owner: Key, m: _Manifest, kinds: Mapping[tuple[str, str], Any]
    ) -> list[dict[str, Any]]:
        """The objects of ``m`` that ``owner``'s identity may get (all of them without ``can_read``)."""
        if self.can_read is None:
            return m.objects
        out: list[dict[str, Any]] = []
        for obj in m.objects:
            res = kinds.get((str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))
            if res is None:
                out.append(obj)  # not served: compare_release skips it without reading anything
                continue
            ns = object_ref(obj, m.release_namespace, bool(res.namespaced)).namespace
            if await self.can_read(owner, str(getattr(res, "group", "") or ""), str(res.name), ns):
                out.append(obj)
        return out

    def _record(self, key: Key, t: _Tracked, found: tuple[Modified, ...]) -> None:
        if found == t.modified:
            return
        before = t.modified
        t.modified = found
        if found:
            metrics.DRIFT_DETECTIONS.inc()
            log.info(
                "drift: HelmApp %s/%s: %s",
                *key,
                "; ".join(m.describe() for m in found[:MAX_NAMED]),
                extra={"helmapp": f"{key[0]}/{key[1]}"},
            )
        elif before:
            log.info("drift: HelmApp %s/%s no longer drifted", *key)
        if t.pending is None:
            # A delayed enqueue: a burst of edits within the delay is handled by one reconcile.
            loop = asyncio.get_running_loop()

            def fire() -> None:
                t.pending = None
                self._enqueue_after(key, 0.0)

            t.pending = loop.call_later(self.delay if found else 0.0, fire)

    def _refresh_gauge(self) -> None:
        metrics.DRIFT_MODIFIED.set(sum(1 for t in self._tracked.values() if t.modified))

    async def close(self) -> None:
        await self.stop()
        with contextlib.suppress(Exception):
            self._dyn = None


__all__ = [
    "DriftMonitor",
    "Modified",
    "ObjectRef",
    "comparable",
    "compare_object",
    "compare_release",
    "decode_release",
    "differences",
    "encode_release",
    "ignored_pointers",
    "manifest_objects",
    "remove_pointer",
]
