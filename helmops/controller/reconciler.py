"""One reconcile of one HelmApp: read, compute desired, classify, act once, write status and Events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from helmops.controller import metrics
from helmops.controller.desired import (
    ChartFetcher,
    Desired,
    DesiredError,
    SpecChecker,
    ValuesRenderer,
    build_release,
    helm_options,
)
from helmops.controller.kube import FINALIZER, Conflict, Kube
from helmops.helm.driver import HelmDriver
from helmops.reconcile import (
    Action,
    ActionResult,
    backoff,
    classify,
    decide,
    install,
    recover,
    uninstall,
    upgrade,
)
from helmops.reconcile.release import ReleaseReader, foreign_owner, owner_value
from helmops.status import (
    Outcome,
    State,
    compute_status,
    now_utc,
    status_changed,
    status_patch,
)

log = logging.getLogger("helmops.controller")

Key = tuple[str, str]

#: an identical Event (same reason and message) for the same HelmApp is posted at most this often.
EVENT_REPEAT_SECONDS = 600.0

#: namespaces deleteNamespace never deletes (Fleet's list plus the controller's own).
PROTECTED_NAMESPACES = frozenset(
    {"default", "cattle-fleet-system", "fleet-local", "fleet-default", "cattle-fleet-clusters-system"}
)


SHARD_LABEL = "fleet.cattle.io/shard-ref"


def in_shard(obj: Mapping[str, Any], shard_id: str | None) -> bool:
    """Fleet's sharding rule: a shard owns objects labelled with its id; the default shard (no id) owns
    the unlabelled ones."""
    label = ((obj.get("metadata") or {}).get("labels") or {}).get(SHARD_LABEL) or None
    return label == (shard_id or None)


def namespace_deletable(name: str, *, own: str, extra: Sequence[str] = ()) -> bool:
    if not name or name in PROTECTED_NAMESPACES or name == own or name in extra:
        return False
    return not name.startswith("kube-")


@dataclass
class ReconcilerConfig:
    pending_grace_seconds: float = 60.0
    resync_seconds: float = 600.0
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    own_namespace: str = "cattle-fleet-system"
    shard_id: str | None = None
    protected_namespaces: Sequence[str] = field(default_factory=tuple)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        driver: HelmDriver,
        releases: ReleaseReader,
        spec: SpecChecker,
        charts: ChartFetcher,
        values: ValuesRenderer,
        config: ReconcilerConfig,
    ) -> None:
        self.kube, self.driver, self.releases = kube, driver, releases
        self.spec, self.charts, self.values, self.config = spec, charts, values, config
        self._failures: dict[Key, int] = {}
        self._last_event: dict[Key, tuple[str, str, float]] = {}
        #: day-2 hook (controller/drift.py): what drifted on an in-sync release ("" = nothing), reported
        #: as Fleet's Modified state.
        self.drift: Callable[[Key], str] | None = None

    # --- bookkeeping -------------------------------------------------------------------------------
    def _retry_in(self, key: Key) -> float:
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        return backoff(n, base=self.config.backoff_base_seconds, cap=self.config.backoff_cap_seconds)

    def _ok(self, key: Key) -> None:
        self._failures.pop(key, None)

    def on_error(self, key: Key, exc: BaseException) -> float:
        """Unexpected failures (API errors, bugs): log and retry with backoff."""
        log.error("reconcile %s/%s failed: %s", key[0], key[1], exc, exc_info=exc)
        metrics.RECONCILES.labels("error").inc()
        return self._retry_in(key)

    # --- entry point -------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        start = time.monotonic()
        result = "ok"
        try:
            obj = await self.kube.get_helmapp(*key)
            if obj is None or not in_shard(obj, self.config.shard_id):
                self._ok(key)
                self._last_event.pop(key, None)
                return None
            if obj["metadata"].get("deletionTimestamp"):
                delay = await self._finalize(key, obj)
            else:
                delay = await self._reconcile(key, obj)
            if key in self._failures:
                result = "retry"
            return delay
        except Conflict:
            result = "conflict"
            return 0.5
        finally:
            metrics.RECONCILES.labels(result).inc()
            metrics.RECONCILE_SECONDS.labels(result).observe(time.monotonic() - start)

    # --- deletion ----------------------------------------------------------------------------------
    async def _finalize(self, key: Key, obj: Mapping[str, Any]) -> float | None:
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return None
        spec = obj.get("spec") or {}
        name, ns = self.spec.release_name(obj), self.spec.release_namespace(obj)
        opts = helm_options(spec)
        live = await self.releases.read(ns, name)
        if (owner := foreign_owner(live, *key)) is not None:
            log.warning("finalize %s/%s: release %s/%s belongs to HelmApp %s; not uninstalled", *key, ns, name, owner)
            live = None
        c = classify(
            live,
            "",
            held=self.driver.holds(ns, name),
            now=now_utc(),
            timeout_seconds=opts["timeoutSeconds"] or 300,
            grace_seconds=self.config.pending_grace_seconds,
        )
        d = decide(c, deleting=True, keep_resources=bool(spec.get("keepResources")), now=now_utc())
        log.info(
            "finalize %s/%s: release %s/%s %s -> %s (%s)",
            *key,
            ns,
            name,
            c.phase,
            d.action,
            d.reason,
            extra={
                "helmapp": f"{key[0]}/{key[1]}",
                "release": f"{ns}/{name}",
                "phase": str(c.phase),
                "action": str(d.action),
            },
        )
        if d.action is Action.WAIT:
            return d.wait_seconds
        if d.action is Action.UNINSTALL:
            res = await self._timed(
                "uninstall",
                uninstall(
                    self.driver,
                    name,
                    ns,
                    timeout_seconds=opts["timeoutSeconds"],
                    service_account=opts["serviceAccount"] or None,
                    service_account_namespace=key[0],
                ),
            )
            version = (obj.get("status") or {}).get("version")
            await self._events(obj, res, suffix=f" (chart version {version})" if version else "")
            if not res.ok:
                outcome = Outcome(
                    key[1],
                    key[0],
                    int(obj["metadata"].get("generation") or 0),
                    State.ERR_APPLIED,
                    error=res.error or res.message,
                )
                await self._write_status(key, obj, outcome)
                return self._retry_in(key)
        if not spec.get("keepResources") and not await self._uninstall_orphans(obj, keep=None):
            return self._retry_in(key)
        target = spec.get("namespace") or ""
        if spec.get("deleteNamespace") and not spec.get("keepResources"):
            if namespace_deletable(target, own=self.config.own_namespace, extra=self.config.protected_namespaces):
                if await self.kube.delete_namespace(target):
                    log.info("deleted namespace %s of HelmApp %s/%s", target, *key)
            elif target:
                log.info("deleteNamespace: namespace %r is protected and was kept", target)
        await self.kube.remove_finalizer(obj)
        self._ok(key)
        return None

    # --- normal reconcile --------------------------------------------------------------------------
    async def _reconcile(self, key: Key, obj: Mapping[str, Any]) -> float | None:
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            await self.kube.add_finalizer(obj)
            refreshed = await self.kube.get_helmapp(*key)
            if refreshed is None:
                return None
            obj = refreshed
        gen = int(obj["metadata"].get("generation") or 0)
        live_status: Mapping[str, Any] = obj.get("status") or {}

        problems = self.spec.problems(obj)
        if problems:
            outcome = Outcome(
                key[1],
                key[0],
                gen,
                State.ERR_APPLIED,
                accepted=False,
                accepted_error="invalid spec: " + "; ".join(problems),
                stalled=True,
            )
            await self._write_status(key, obj, outcome)
            await self._events(obj, ActionResult(False, "InvalidSpec", "invalid spec: " + "; ".join(problems)))
            return self._retry_in(key)

        try:
            desired = await self._desired(obj)
        except DesiredError as exc:
            log.warning("HelmApp %s/%s not accepted: %s", *key, exc, extra={"helmapp": f"{key[0]}/{key[1]}"})
            outcome = Outcome(
                key[1],
                key[0],
                gen,
                State.ERR_APPLIED,
                accepted=False,
                accepted_error=_plain(exc.message),
                stalled=not exc.retryable,
            )
            await self._write_status(key, obj, outcome)
            await self._events(obj, ActionResult(False, "NotAccepted", _plain(exc.message)))
            return self._retry_in(key)

        chart = desired.chart
        old_version = live_status.get("version")
        if old_version and old_version != chart.version:
            await self.kube.event(
                obj,
                "GotNewChartVersion",
                f"chart {chart.name} version {chart.version} (was {old_version}), digest {chart.digest}",
            )

        rel = desired.release
        live = await self.releases.read(rel.namespace, rel.name)
        if (owner := foreign_owner(live, *key)) is not None:
            msg = (
                f"release {rel.name} in namespace {rel.namespace} belongs to another HelmApp ({owner}); "
                "choose another spec.helm.releaseName or namespace"
            )
            await self._write_status(
                key,
                obj,
                Outcome(
                    key[1],
                    key[0],
                    gen,
                    State.ERR_APPLIED,
                    accepted=False,
                    accepted_error=msg,
                    stalled=True,
                    version=chart.version,
                ),
            )
            return self._retry_in(key)
        now = now_utc()
        c = classify(
            live,
            desired.fingerprint,
            held=self.driver.holds(rel.namespace, rel.name),
            now=now,
            timeout_seconds=rel.timeout_seconds or 300,
            grace_seconds=self.config.pending_grace_seconds,
        )
        d = decide(c, deleting=False, keep_resources=False, now=now)
        log.info(
            "reconcile %s/%s: release %s/%s %s -> %s (%s)",
            *key,
            rel.namespace,
            rel.name,
            c.phase,
            d.action,
            d.reason,
            extra={
                "helmapp": f"{key[0]}/{key[1]}",
                "release": f"{rel.namespace}/{rel.name}",
                "phase": str(c.phase),
                "action": str(d.action),
                "chart": chart.name,
                "chartVersion": chart.version,
                "fingerprint": desired.fingerprint,
            },
        )

        def out(state: State, **kw: Any) -> Outcome:
            return Outcome(key[1], key[0], gen, state, version=chart.version, **kw)

        if d.action is Action.NONE:
            self._ok(key)
            await self._namespace_metadata(obj, rel.namespace)
            drifted = self.drift(key) if self.drift is not None else ""
            await self._write_status(key, obj, out(State.MODIFIED, message=drifted) if drifted else out(State.READY))
            return self.config.resync_seconds
        if d.action is Action.WAIT:
            await self._write_status(key, obj, out(State.WAIT_APPLIED, message=d.reason))
            return d.wait_seconds
        if (obj.get("spec") or {}).get("paused"):
            # Fleet: a paused HelmApp's deployment is not updated, only reported as out of sync.
            self._ok(key)
            note = f"paused: release is {c.phase}, {d.action} skipped"
            await self._write_status(key, obj, out(State.OUT_OF_SYNC, message=note))
            return self.config.resync_seconds

        res = await self._act(d.action, desired, c)
        if d.action is Action.RECOVER and not res.ok:
            res = await self._recovered_anyway(rel.namespace, rel.name, res)
        await self._events(obj, res, suffix=f" (chart {chart.name} {chart.version}, digest {chart.digest})")
        if not res.ok:
            # The last good release keeps running: nothing is uninstalled or rolled back on our side.
            await self._write_status(key, obj, out(State.ERR_APPLIED, error=res.error or res.message))
            return self._retry_in(key)
        self._ok(key)
        if d.action is Action.RECOVER:
            await self._write_status(key, obj, out(State.WAIT_APPLIED, message=res.message))
            return 0.1
        await self._namespace_metadata(obj, rel.namespace)
        await self._uninstall_orphans(obj, keep=(rel.namespace, rel.name))
        await self._write_status(key, obj, out(State.READY))
        return self.config.resync_seconds

    async def _uninstall_orphans(self, obj: Mapping[str, Any], keep: tuple[str, str] | None) -> bool:
        """Uninstalls this HelmApp's releases other than ``keep`` (left behind when spec.helm.releaseName or
        the namespace changed). True when none is left."""
        key = _key(obj)
        spec = obj.get("spec") or {}
        clean = True
        for orphan in await self.releases.owned(owner_value(*key)):
            if (orphan.namespace, orphan.name) == keep or self.driver.holds(orphan.namespace, orphan.name):
                continue
            res = await self._timed(
                "uninstall",
                uninstall(
                    self.driver,
                    orphan.name,
                    orphan.namespace,
                    timeout_seconds=int((spec.get("helm") or {}).get("timeoutSeconds") or 0),
                    service_account=spec.get("serviceAccount") or None,
                    service_account_namespace=key[0],
                ),
            )
            if res.ok:
                res = ActionResult(True, "Uninstalled", f"{res.message}: no longer this HelmApp's release")
            clean = clean and res.ok
            await self._events(obj, res)
        return clean

    async def _namespace_metadata(self, obj: Mapping[str, Any], namespace: str) -> None:
        """Fleet's namespaceLabels/namespaceAnnotations, applied to the release namespace (added or
        overwritten, never removed)."""
        spec = obj.get("spec") or {}
        labels, annotations = spec.get("namespaceLabels") or {}, spec.get("namespaceAnnotations") or {}
        if (labels or annotations) and await self.kube.ensure_namespace_metadata(namespace, labels, annotations):
            log.info("labelled/annotated namespace %s for HelmApp %s/%s", namespace, *_key(obj))

    async def _recovered_anyway(self, namespace: str, name: str, res: ActionResult) -> ActionResult:
        """A rollback out of pending-* can fail (helm will not adopt objects the pending manifest lacks) yet
        still leave the release proceedable (``failed``): then the stuck state is gone and the next
        reconcile upgrades it like any failed release."""
        after = await self.releases.read(namespace, name)
        if after is not None and after.status.startswith("pending-"):
            return res
        state = after.status if after else "absent"
        return ActionResult(
            True,
            "ReleaseRecovered",
            f"release {namespace}/{name} is no longer stuck (now {state}, revision "
            f"{after.revision if after else '-'}); {res.message}",
            revision=after.revision if after else None,
        )

    async def _desired(self, obj: Mapping[str, Any]) -> Desired:
        name, ns = self.spec.release_name(obj), self.spec.release_namespace(obj)
        chart = await self.charts.fetch(obj)
        values = await self.values.render_values(obj, ns)
        return build_release(obj, release_name=name, release_namespace=ns, chart=chart, values=values)

    async def _act(self, action: Action, desired: Desired, c: Any) -> ActionResult:
        rel = desired.release
        if action is Action.INSTALL:
            return await self._timed("install", install(self.driver, rel, take_ownership=rel.take_ownership))
        if action is Action.UPGRADE:
            return await self._timed("upgrade", upgrade(self.driver, rel))
        if action is Action.RECOVER:
            return await self._timed(
                "recover",
                recover(
                    self.driver,
                    c,
                    timeout_seconds=rel.timeout_seconds,
                    service_account=rel.service_account,
                    service_account_namespace=rel.service_account_namespace,
                    history_max=rel.history_max,
                ),
            )
        raise AssertionError(f"unexpected action {action}")

    async def _timed(self, action: str, coro: Any) -> ActionResult:
        start = time.monotonic()
        metrics.HELM_ACTIVE.inc()
        try:
            res: ActionResult = await coro
        finally:
            metrics.HELM_ACTIVE.dec()
            metrics.HELM_ACTION_SECONDS.labels(action).observe(time.monotonic() - start)
        outcome = "success" if res.ok else "failure"
        metrics.HELM_ACTIONS.labels(action, outcome).inc()
        metrics.HELM_OUTCOME_SECONDS.labels(action, outcome).observe(time.monotonic() - start)
        return res

    async def _events(self, obj: Mapping[str, Any], res: ActionResult, suffix: str = "") -> None:
        key: Key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        now = time.monotonic()
        last = self._last_event.get(key)
        if last and last[:2] == (res.reason, res.message) and now - last[2] < EVENT_REPEAT_SECONDS:
            return  # the same outcome again on retry: one Event (set) per EVENT_REPEAT_SECONDS is enough
        self._last_event[key] = (res.reason, res.message, now)
        if res.reason:
            await self.kube.event(obj, res.reason, res.message + suffix, warning=not res.ok)
        for reason, message in res.extra_events:
            await self.kube.event(obj, reason, message + suffix, warning=True)

    async def _write_status(self, key: Key, obj: Mapping[str, Any], outcome: Outcome) -> None:
        live = obj.get("status") or {}
        desired = compute_status(outcome, live, now_utc())
        if not status_changed(live, desired):
            return
        out = await self.kube.patch_status(key[0], key[1], status_patch(live, desired))
        if out is None:
            log.debug("HelmApp %s/%s vanished before its status was written", *key)


def _key(obj: Mapping[str, Any]) -> Key:
    return (obj["metadata"]["namespace"], obj["metadata"]["name"])


def _plain(message: str) -> str:
    """Messages from the values package may already name the cluster; status adds the prefix itself."""
    if message.startswith("cluster ") and ": " in message:
        return message.split(": ", 1)[1]
    return message


__all__ = [
    "PROTECTED_NAMESPACES",
    "SHARD_LABEL",
    "Key",
    "Reconciler",
    "ReconcilerConfig",
    "in_shard",
    "namespace_deletable",
]
