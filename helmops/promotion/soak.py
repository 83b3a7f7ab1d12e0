"""Automatic promotion with a soak: a HelmApp annotated ``helmops.cattle.io/promote-from: SOURCE`` and
``helmops.cattle.io/soak: 1h`` gets the chart version its source has run Ready on all its clusters,
continuously, for the soak time — exactly the spec change ``helmops promote`` makes.

"Continuously" is tracked on the source itself, in the ``helmops.cattle.io/ready-since`` annotation
(``{"version": V, "since": RFC 3339}``), after each of its reconciles: set when it is first seen Ready
everywhere at V, removed as soon as it is seen otherwise, restarted when its version changes. So a source that
turned NotReady during the soak starts over and its version is never promoted early. Chains (dev → staging →
prod) follow, as each HelmApp tracks its own Ready run. The source must be in the same namespace (a tenant's
HelmApps promote between themselves only). Each promotion is an Event and the ``helmops.cattle.io/promoted``
annotation on the promoted HelmApp (version, source, since, when).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from helmops.api.duration import parse_duration
from helmops.api.objects import HelmApp
from helmops.api.parse import lenient_helmapp
from helmops.promotion.keys import PROMOTE_FROM, PROMOTED, READY_SINCE, SOAK
from helmops.promotion.readiness import not_ready_reasons, promotion_patch
from helmops.promotion.settings import SettingsError, bounded_text
from helmops.runtime import metrics

log = logging.getLogger("helmops.controller")

Key = tuple[str, str]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MAX_SOAK = timedelta(days=90)
#: the most followers remembered per source, and sources overall (an in-memory index, rebuilt by resyncs).
MAX_FOLLOWERS = 256
MAX_SOURCES = 10_000


@dataclass(frozen=True)
class Soak:
    source: str
    seconds: float


def soak_setting(annotations: Mapping[str, str], namespace: str) -> Soak | None:
    """The promotion source and soak (None: no automatic promotion); SettingsError when malformed."""
    source = (bounded_text(annotations, PROMOTE_FROM) or "").strip()
    if not source:
        return None
    ns, _, name = source.rpartition("/")
    if ns and namespace and ns != namespace:  # namespace "": not known (offline validation)
        raise SettingsError(f"annotation {PROMOTE_FROM} must name a HelmApp of namespace {namespace}")
    if not _NAME.match(name):
        raise SettingsError(f"annotation {PROMOTE_FROM} is not a HelmApp name")
    text = (bounded_text(annotations, SOAK) or "0").strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise SettingsError(f"annotation {SOAK} must be a Go duration such as 30m or 1h") from None
    if not 0 <= seconds <= MAX_SOAK.total_seconds():
        raise SettingsError(f"annotation {SOAK} must be between 0 and {MAX_SOAK.days} days")
    return Soak(name, seconds)


@dataclass(frozen=True)
class ReadyRun:
    version: str
    since: datetime

    def text(self) -> str:
        return json.dumps({"version": self.version, "since": self.since.isoformat(timespec="seconds")})


def ready_run(annotations: Mapping[str, str]) -> ReadyRun | None:
    """The source's tracked Ready run (None when absent or garbage)."""
    text = annotations.get(READY_SINCE) or ""
    if not text or len(text) > 512:
        return None
    try:
        data = json.loads(text)
        since = datetime.fromisoformat(str(data["since"]))
        version = str(data["version"])
    except (ValueError, KeyError, TypeError):
        return None
    if since.tzinfo is None or not version or len(version) > 128:
        return None
    return ReadyRun(version, since)


def next_run(obj: Mapping[str, Any], now: datetime) -> tuple[bool, ReadyRun | None]:
    """(changed, run): the Ready run a HelmApp's status shows now, and whether the annotation must change."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    current = ready_run(annotations)
    version = str((obj.get("status") or {}).get("version") or "")
    if not_ready_reasons(obj) or not version:
        return (current is not None or READY_SINCE in annotations), None
    if current is not None and current.version == version:
        return False, current
    # stored to the second, rounded up: a soak is never shortened by the rounding
    since = now.astimezone(UTC)
    if since.microsecond:
        since = since.replace(microsecond=0) + timedelta(seconds=1)
    return True, ReadyRun(version, since)


@dataclass(frozen=True)
class Verdict:
    """What to do for a follower: promote ``version``, or wait (``until`` when known), or nothing."""

    version: str | None = None
    until: datetime | None = None
    why: str = ""


def decide(target: HelmApp, source: Mapping[str, Any] | None, soak: Soak, now: datetime) -> Verdict:
    """Pure: whether the soak of the source's current Ready run is over, and for which version. The target
    is the parsed model (its ``spec.helm.version``); the source is read only for its annotations and stored
    status, which stay in the stored shape."""
    if source is None:
        return Verdict(why=f"promotion source {soak.source} not found")
    run = ready_run((source.get("metadata") or {}).get("annotations") or {})
    if run is None or not_ready_reasons(source, run.version):
        return Verdict(why=f"promotion source {soak.source} is not Ready everywhere")
    current = str(target.spec.helm.version or "")
    if current == run.version:
        return Verdict(why=f"nothing to promote, already at {run.version} of {soak.source}")
    until = run.since + timedelta(seconds=soak.seconds)
    if now < until:
        return Verdict(until=until, why=f"soaking {run.version} on {soak.source} until {until.isoformat()}")
    return Verdict(version=run.version, why=f"{soak.source} ran {run.version} Ready everywhere since {run.since}")


class PromotionStore(Protocol):
    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None: ...

    async def patch_helmapp(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        """A merge patch; False on a conflict (the resourceVersion moved)."""
        ...

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None: ...


class Promoter:
    """Runs after each reconcile of a HelmApp (``after_reconcile``): tracks its Ready run and, when it follows
    a source, promotes it once the soak is over. ``requeue``: the work queue's ``add_after``."""

    def __init__(
        self,
        store: PromotionStore,
        requeue: Callable[[Key, float], None],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.requeue, self.clock = store, requeue, clock
        #: source → HelmApps that promote from it (so a change of the source re-checks them at once).
        self.followers: dict[Key, set[Key]] = {}
        #: what each follower waits for, said once per change (log line).
        self._said: dict[Key, str] = {}
        #: HelmApps whose annotations name a promotion source (from the watch: :meth:`observe`). Only they
        #: and the sources they name cost anything after a reconcile: a HelmApp that takes no part in
        #: promotion is not read again, and its annotations are never written.
        self.annotated: set[Key] = set()

    def observe(self, key: Key, annotations: Mapping[str, str], present: bool = True) -> None:
        """A watch event of ``key`` (``present=False``: it is gone)."""
        if present and annotations.get(PROMOTE_FROM):
            self.annotated.add(key)
        else:
            self.annotated.discard(key)

    def waiting(self) -> dict[Key, str]:
        return dict(self._said)

    async def after_reconcile(self, key: Key) -> None:
        if key not in self.annotated and key not in self.followers:
            return  # takes no part in promotion
        obj = await self.store.get_helmapp(*key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._forget(key)
            return
        await self._track(key, obj)
        # typed where it enters (leniently: a follower the reconcile refuses still follows its source); the
        # manifest as read stays for the patches (stored shape, guarded by its resourceVersion) and Events
        await self._follow(key, obj, lenient_helmapp(obj))

    def _forget(self, key: Key) -> None:
        self._said.pop(key, None)
        for followers in self.followers.values():
            followers.discard(key)

    async def _track(self, key: Key, obj: Mapping[str, Any]) -> None:
        changed, run = next_run(obj, self.clock())
        if not changed:
            return
        await self.store.patch_annotations(*key, {READY_SINCE: run.text() if run is not None else None})
        for follower in self.followers.get(key, ()):
            self.requeue(follower, 0.0)

    async def _follow(self, key: Key, obj: Mapping[str, Any], app: HelmApp) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            soak = soak_setting(annotations, key[0])
        except SettingsError as exc:
            if self._said.get(key) != str(exc):
                self._said[key] = str(exc)
                log.warning("HelmApp %s/%s: %s", *key, exc, extra={"helmapp": f"{key[0]}/{key[1]}"})
                await self.store.event(obj, "InvalidPromotionSettings", str(exc), warning=True)
            return
        if soak is None:
            self._said.pop(key, None)
            return
        source_key = (key[0], soak.source)
        if len(self.followers) < MAX_SOURCES or source_key in self.followers:
            if source_key not in self.followers:
                self.requeue(source_key, 0.0)  # a new source: its Ready run is tracked from its next reconcile
            followers = self.followers.setdefault(source_key, set())
            if len(followers) < MAX_FOLLOWERS:
                followers.add(key)
        now = self.clock()
        verdict = decide(app, await self.store.get_helmapp(*source_key), soak, now)
        if verdict.until is not None:
            self.requeue(key, max(0.0, (verdict.until - now).total_seconds()) + 0.5)
        if verdict.version is None:
            if self._said.get(key) != verdict.why:
                self._said[key] = verdict.why
                log.info("HelmApp %s/%s: promotion: %s", *key, verdict.why, extra={"helmapp": f"{key[0]}/{key[1]}"})
            return
        await self._promote(key, obj, app, soak, verdict, now)

    async def _promote(
        self, key: Key, obj: Mapping[str, Any], app: HelmApp, soak: Soak, verdict: Verdict, now: datetime
    ) -> None:
        assert verdict.version is not None
        old = str(app.spec.helm.version or "")
        record = {
            "version": verdict.version,
            "previous": old,
            "from": f"{key[0]}/{soak.source}",
            "at": now.astimezone(UTC).isoformat(timespec="seconds"),
            "by": "helmops soak promotion",
            "why": verdict.why,
        }
        if not await self.store.patch_helmapp(
            *key, promotion_patch(obj, verdict.version, {PROMOTED: json.dumps(record)})
        ):
            self.requeue(key, 1.0)  # edited meanwhile: decide again on the new spec
            return
        self._said.pop(key, None)
        metrics.PROMOTIONS.labels("success").inc()
        msg = (
            f"promoted {old or '(empty)'} -> {verdict.version} by helmops soak promotion: {verdict.why}"
            f" (soak {soak.seconds:g}s)"
        )
        log.info("HelmApp %s/%s: %s", *key, msg, extra={"helmapp": f"{key[0]}/{key[1]}", "version": verdict.version})
        await self.store.event(obj, "Promoted", msg)


__all__ = [
    "Promoter",
    "PromotionStore",
    "ReadyRun",
    "Soak",
    "Verdict",
    "decide",
    "next_run",
    "ready_run",
    "soak_setting",
]
