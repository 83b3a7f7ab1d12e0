"""Helm release records as the drift monitor knows them: decoded manifests and the object → release index.

Two paths fill the index. The monitor's full check lists every deployed release Secret and rebuilds it
(:func:`listed_manifests`, then :meth:`ReleaseIndex.add` per release). Between checks, the release-record watch
updates it one release at a time (:func:`secret_view` of the event, :func:`decode_manifest`,
:meth:`ReleaseIndex.replace` / :meth:`ReleaseIndex.drop`): an install or upgrade costs one decode, not a list
of every release, so a burst of N installs costs O(N) instead of a full O(N) check every few seconds.

Both paths apply the same rules, so the index after any mix of them is what a full check would build: a
release Secret counts only when its tenant-writable owner label names a tracked HelmApp *and* it lives in one
of that HelmApp's release namespaces (:func:`release_namespaces`), and of the deployed revisions of one
release (namespace, name) the highest wins.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from helmops.api.keys import Key
from helmops.api.options import BundleDeploymentOptions
from helmops.api.spec import HelmAppSpec
from helmops.kubeio.mapping import Resource
from helmops.reconcile.manifest import ObjectRef, manifest_objects, object_ref
from helmops.reconcile.release import OWNER_LABEL
from helmops.reconcile.storage import decode_release

log = logging.getLogger("helmops.controller")

#: a release value (base64 as the API returns it) longer than this is decoded in a worker thread: gunzip and
#: YAML parsing of a big chart's manifest take milliseconds the event loop should not wait for.
DECODE_OFF_LOOP = 16 * 1024
#: errors a record that cannot be read raises (TypeError, ValueError: a tenant's ``version`` that is no number).
DECODE_ERRORS = (ValueError, TypeError, OSError, json.JSONDecodeError)

#: (release namespace, release name)
ReleaseKey = tuple[str, str]
#: kinds by (apiVersion, kind): the served resource, or None when the cluster does not serve it.
Kinds = Mapping[tuple[str, str], Resource | None]


def release_namespaces(spec: HelmAppSpec) -> frozenset[str]:
    """Where a HelmApp's releases may live: its own namespace fields and its targets' (else ``default``).

    Release Secrets carry a tenant-writable owner label; one found elsewhere was planted by someone who may
    write Secrets in a namespace this HelmApp never deploys to, and is not attributed to it."""
    found: set[str] = set()
    parts: list[BundleDeploymentOptions] = [spec, *spec.targets]
    for part in parts:
        found.update(value for value in (part.namespace, part.default_namespace) if value)
    return frozenset(found or {"default"})


@dataclass
class Manifest:
    key: str  # secret namespace/name@resourceVersion
    release_namespace: str
    release_name: str
    revision: int
    owner: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def release(self) -> ReleaseKey:
        return (self.release_namespace, self.release_name)


@dataclass(frozen=True)
class SecretView:
    """The parts of a release Secret the monitor reads, from a listed item or a watch event alike."""

    namespace: str
    name: str
    resource_version: str
    labels: Mapping[str, str]
    value: str  # data.release, as the API returns it

    @property
    def cache_key(self) -> str:
        return f"{self.namespace}/{self.name}@{self.resource_version}"

    @property
    def owner(self) -> str:
        return str(self.labels.get(OWNER_LABEL) or "")


def listed_secret(item: Any) -> SecretView:
    """A ``V1Secret`` of the client's list call."""
    meta = item.metadata
    labels = {str(k): str(v) for k, v in (meta.labels or {}).items()}
    return SecretView(
        str(meta.namespace or ""),
        str(meta.name or ""),
        str(meta.resource_version or ""),
        labels,
        str((item.data or {}).get("release", "")),
    )


def secret_view(obj: Mapping[str, Any]) -> SecretView | None:
    """A watch event's Secret (parsed JSON); None when it is not shaped like one."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    labels = meta.get("labels")
    data = obj.get("data")
    value = data.get("release", "") if isinstance(data, Mapping) else ""
    return SecretView(
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(meta.get("resourceVersion") or ""),
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
        value if isinstance(value, str) else "",
    )


def attributed(
    secret: SecretView, owners: Mapping[str, Key], namespaces: Callable[[Key], frozenset[str] | None]
) -> Key | None:
    """The tracked HelmApp a release Secret belongs to, or None (untracked owner, or a namespace its HelmApp
    never deploys to). ``namespaces`` gives a tracked HelmApp's :func:`release_namespaces` (None: untracked)."""
    owner = owners.get(secret.owner)
    if owner is None:
        return None
    allowed = namespaces(owner)
    return owner if allowed is not None and secret.namespace in allowed else None


def _decode(secret: SecretView) -> Manifest:
    rel = decode_release(secret.value)
    return Manifest(
        secret.cache_key,
        secret.namespace,
        str(secret.labels.get("name") or rel.get("name") or ""),
        int(secret.labels.get("version") or rel.get("version") or 0),
        secret.owner,
        manifest_objects(str(rel.get("manifest") or "")),
    )


async def decode_manifest(secret: SecretView) -> Manifest:
    """The release's manifest, bounded by :func:`decode_release`'s limits; a big record is decoded off the
    event loop. Raises one of :data:`DECODE_ERRORS` for a record that cannot be read."""
    if len(secret.value) > DECODE_OFF_LOOP:
        return await asyncio.to_thread(_decode, secret)
    return _decode(secret)


async def listed_manifests(
    secrets: Iterable[SecretView],
    owners: Mapping[str, Key],
    namespaces: Callable[[Key], frozenset[str] | None],
    cache: Mapping[str, Manifest],
) -> tuple[list[Manifest], dict[str, Manifest]]:
    """The newest deployed revision of every attributed release, and the decode cache for the next pass (the
    manifests of the Secrets listed now: a revision is decoded once)."""
    seen: dict[ReleaseKey, Manifest] = {}
    fresh: dict[str, Manifest] = {}
    for secret in secrets:
        if attributed(secret, owners, namespaces) is None:
            continue
        m = cache.get(secret.cache_key)
        if m is None:
            try:
                m = await decode_manifest(secret)
            except DECODE_ERRORS as exc:
                log.warning("drift: cannot decode release Secret %s/%s: %s", secret.namespace, secret.name, exc)
                continue
        fresh[secret.cache_key] = m
        if m.release not in seen or seen[m.release].revision < m.revision:
            seen[m.release] = m
    return list(seen.values()), fresh


#: what the index keeps per object: the HelmApp, the release's manifest and the object as the chart set it.
Entry = tuple[Key, Manifest, dict[str, Any]]


class ReleaseIndex:
    """Object → the releases that deploy it, and release → its indexed manifest and objects (so one release
    can be replaced or dropped without touching the others)."""

    def __init__(self) -> None:
        self._objects: dict[ObjectRef, list[Entry]] = {}
        self._releases: dict[ReleaseKey, tuple[Manifest, list[ObjectRef]]] = {}

    def get(self, ref: ObjectRef, default: Iterable[Entry] = ()) -> Iterable[Entry]:
        return self._objects.get(ref, default)

    def __len__(self) -> int:
        return len(self._objects)

    def manifests(self) -> list[Manifest]:
        return [m for m, _ in self._releases.values()]

    def manifest(self, release: ReleaseKey) -> Manifest | None:
        found = self._releases.get(release)
        return found[0] if found is not None else None

    def add(self, owner: Key, m: Manifest, objects: Iterable[dict[str, Any]], kinds: Kinds) -> None:
        """Indexes ``objects`` (those of ``m`` the owner may read) whose kind the cluster serves."""
        refs: list[ObjectRef] = []
        for obj in objects:
            res = kinds.get((str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))
            if res is not None:
                ref = object_ref(obj, m.release_namespace, bool(res.namespaced))
                self._objects.setdefault(ref, []).append((owner, m, obj))
                refs.append(ref)
        old = self._releases.get(m.release)
        self._releases[m.release] = (m, (old[1] if old is not None else []) + refs)

    def drop(self, release: ReleaseKey) -> Manifest | None:
        """Forgets a release's objects; returns the manifest they came from."""
        found = self._releases.pop(release, None)
        if found is None:
            return None
        m, refs = found
        for ref in set(refs):
            kept = [e for e in self._objects.get(ref, ()) if e[1] is not m]
            if kept:
                self._objects[ref] = kept
            else:
                self._objects.pop(ref, None)
        return m

    def newer(self, m: Manifest) -> bool:
        """Would a full check pick ``m`` over the indexed revision of its release (a higher or the same one)?"""
        current = self.manifest(m.release)
        return current is None or m.revision >= current.revision

    def replace(self, owner: Key, m: Manifest, objects: Iterable[dict[str, Any]], kinds: Kinds) -> bool:
        """``m`` replaces the indexed revision of its release unless that one is newer. True if it did."""
        if not self.newer(m):
            return False
        self.drop(m.release)
        self.add(owner, m, objects, kinds)
        return True


def object_kinds(m: Manifest) -> list[tuple[str, str]]:
    """The (apiVersion, kind) pairs a manifest deploys, first occurrence first."""
    kinds: dict[tuple[str, str], None] = {}
    for obj in m.objects:
        kinds.setdefault((str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")), None)
    return list(kinds)


async def readable_objects(
    can_read: Callable[[Key, str, str, str], Awaitable[bool]] | None, owner: Key, m: Manifest, kinds: Kinds
) -> list[dict[str, Any]]:
    """The objects of ``m`` that ``owner``'s identity may get (all of them without ``can_read``): the record
    naming them is writable by whoever can write Secrets in the release namespace, and the monitor reads with
    the controller's rights."""
    if can_read is None:
        return m.objects
    out: list[dict[str, Any]] = []
    for obj in m.objects:
        res = kinds.get((str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))
        if res is None:
            out.append(obj)  # not served: compare_release skips it without reading anything
            continue
        ns = object_ref(obj, m.release_namespace, bool(res.namespaced)).namespace
        if await can_read(owner, res.group, res.plural, ns):
            out.append(obj)
    return out


async def apply_release_event(
    index: ReleaseIndex,
    event_type: str,
    secret: SecretView,
    owner: Key,
    scope: Callable[[str, str], Awaitable[Resource | None]],
    readable: Callable[[Manifest, Kinds], Awaitable[list[dict[str, Any]]]],
) -> set[Resource] | None:
    """One watch event of an attributed release Secret applied to ``index`` as a full check would apply it.

    Returns the served kinds the release deploys (to watch), or None when only a full check can tell (an
    undecodable record, a deletion without the release's name). ``scope`` resolves a kind (None: not served),
    ``readable`` filters the objects ``owner``'s identity may get."""
    if event_type == "DELETED":
        # uninstalled, or superseded (no longer ``status=deployed``): only the indexed revision's Secret matters
        release = (secret.namespace, str(secret.labels.get("name") or ""))
        current = index.manifest(release)
        if current is not None and current.key.startswith(f"{secret.namespace}/{secret.name}@"):
            index.drop(release)
        return set() if release[1] else None
    try:
        m = await decode_manifest(secret)
    except DECODE_ERRORS:
        return None
    if not index.newer(m):
        return set()  # an older revision's event, late
    kinds: dict[tuple[str, str], Resource | None] = {}
    for k in object_kinds(m):
        kinds[k] = await scope(*k)
    index.replace(owner, m, await readable(m, kinds), kinds)
    return {res for res in kinds.values() if res is not None}


class ReleaseEvents:
    """Release record events waiting to be applied: the latest per Secret, at most ``cap`` Secrets, applied in
    batches by one task (started on demand), so a burst of installs is applied as it comes, in order."""

    def __init__(self, apply: Callable[[list[tuple[str, SecretView]]], Awaitable[None]], cap: int) -> None:
        self._apply, self._cap = apply, cap
        self._pending: dict[tuple[str, str], tuple[str, SecretView]] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, event_type: str, secret: SecretView) -> bool:
        """Queues an event; False (and everything waiting dropped) when ``cap`` Secrets wait already: a full
        check is cheaper than a flood of them."""
        where = (secret.namespace, secret.name)
        if len(self._pending) >= self._cap and where not in self._pending:
            self._pending.clear()
            return False
        self._pending[where] = (event_type, secret)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="helmops-drift-release-events")
        return True

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = list(self._pending.values()), {}
            try:
                await self._apply(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ``apply`` handles each event's failures; this keeps the task alive
                log.warning("drift: release record events not applied (the next check reads them): %s", exc)

    async def stop(self) -> None:
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


__all__ = [
    "DECODE_ERRORS",
    "Manifest",
    "ReleaseEvents",
    "ReleaseIndex",
    "SecretView",
    "apply_release_event",
    "attributed",
    "decode_manifest",
    "listed_manifests",
    "listed_secret",
    "object_kinds",
    "readable_objects",
    "release_namespaces",
    "secret_view",
]
