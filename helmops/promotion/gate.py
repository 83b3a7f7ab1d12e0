"""The safe-promotion gate of the executor: approval of a plan, and maintenance windows.

Approval: a HelmApp annotated ``helmops.cattle.io/require-approval: "true"`` runs a mutating helm action on
a cluster only when the plan of that action is part of the plan ``helmops approve`` approved. Windows
(:mod:`helmops.promotion.windows`): outside an allow window or inside a deny window the action waits, unless
``helmops.cattle.io/window-override`` names the current plan (``helmops approve --override``): one plan, now.
Both rules live in one gate so a plan is marked applied only once every rule let it run.

Per held action the gate computes the cluster's plan (:mod:`helmops.promotion.plan`), stores the HelmApp's
plan in the ``helmops.cattle.io/plan`` annotation (for ``helmops plan`` and the status) and holds the action
with an ``AwaitingApproval`` result (status message + Event: the hash and a one-line summary). Deleting a
HelmApp is not gated (the ``finalize`` path). Once the approved hash matches, each cluster's entry is marked
applied as its action starts, so the remaining clusters of the same plan proceed with the same approval,
and the next change makes a new plan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from helmops.promotion import plan as plans
from helmops.promotion.render import HelmTemplate, chart_name, deployed_record
from helmops.promotion.settings import APPROVED_PLAN, OVERRIDE, PLAN, SettingsError, approval, plan_hash_text
from helmops.promotion.windows import Closed, check, windows
from helmops.reconcile.classify import Action
from helmops.reconcile.release import FINGERPRINT_LABEL
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import Step
from helmops.runtime import metrics

log = logging.getLogger("helmops.controller")

AWAITING = "AwaitingApproval"
OUTSIDE_WINDOW = "OutsideMaintenanceWindow"
INVALID = "InvalidPromotionSettings"
#: cached cluster plans (one per HelmApp, cluster, desired fingerprint and deployed revision).
CACHE_SIZE = 256


class HelmAppStore(Protocol):
    """What the gate reads and writes (``helmops.kubeio.kube.Kube``)."""

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None: ...

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]: ...


class Renderer(Protocol):
    async def render(self, spec: Any) -> str | None: ...


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


async def cluster_labels(store: HelmAppStore, namespace: str, cluster: str) -> dict[str, str]:
    """The Fleet Cluster's labels (``cluster`` is "namespace/name"; none for the local cluster)."""
    ns, _, name = cluster.rpartition("/")
    for c in await store.list_clusters(ns or namespace):
        meta = c.get("metadata") or {}
        if meta.get("name") == name:
            return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return {}


class PromotionGate:
    """A :class:`helmops.reconcile.executor.Gate`. ``clock``: the time windows are checked at (tests)."""

    def __init__(
        self,
        store: HelmAppStore,
        renderer: Renderer | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        requeue: Callable[[tuple[str, str], float], None] | None = None,
    ) -> None:
        self.store = store
        #: reconcile the HelmApp again after this many seconds (the work queue's add_after): when a window opens.
        self.requeue = requeue
        self.renderer: Renderer = renderer or HelmTemplate()
        self.clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        #: what each held (HelmApp, cluster) waits for ("approval" or "window") and since when it was last said.
        self._waiting: dict[tuple[str, str, str], tuple[str, float]] = {}

    def _set_waiting(self, key: tuple[str, str], cluster: str, reason: str | None) -> None:
        if reason is None:
            self._waiting.pop((*key, cluster), None)
        else:
            self._waiting[(*key, cluster)] = (reason, time.monotonic())
        self._gauges()

    def _gauges(self) -> None:
        for what in ("approval", "window"):
            apps = {k[:2] for k, (v, _) in self._waiting.items() if v == what}
            metrics.PROMOTION_WAITING.labels(what).set(len(apps))

    def settle(self, key: tuple[str, str], started: float) -> None:
        """A reconcile of ``key`` that started at ``started`` (time.monotonic) is over: clusters it did not hold
        again (reverted, untargeted, deleted) wait no more."""
        for k in [k for k, (_, at) in self._waiting.items() if k[:2] == key and at < started]:
            del self._waiting[k]
        self._gauges()
        if not any(k[:2] == key for k in self._waiting):
            self._locks.pop(key, None)

    async def hold(self, step: Step) -> ActionResult | None:
        if step.verb == "finalize":
            return None  # deleting a HelmApp is explicit in itself
        key = step.helmapp
        obj = await self.store.get_helmapp(*key)
        if obj is None:
            return None
        try:
            ann = annotations_of(obj)
            setting, ws = approval(ann), windows(ann)
            selective = setting.selector is not None or any(w.selector is not None for w in ws)
            labels = await cluster_labels(self.store, key[0], step.cluster) if selective else {}
            needed = setting.applies_to(labels)
            closed: Closed | None = check(ws, labels, self.clock())
        except (SettingsError, ValueError) as exc:
            msg = f"promotion settings: {exc}; mutating actions are held until fixed"
            log.warning("HelmApp %s/%s: %s", *key, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
            return ActionResult(False, INVALID, msg)
        if not needed and closed is None:
            self._set_waiting(key, step.cluster, None)
            return None
        entry = await self._entry(step)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # read again under the lock: another cluster of this HelmApp may have written the plan
            obj = await self.store.get_helmapp(*key) or obj
            ann = annotations_of(obj)
            stored = plans.load(ann.get(PLAN))
            mine = stored["clusters"].get(step.cluster)
            current = mine is not None and mine.get("hash") == entry["hash"] and bool(stored["planHash"])
            approved = not needed or (current and plan_hash_text(ann, APPROVED_PLAN) == stored["planHash"])
            opened = closed is None or (current and plan_hash_text(ann, OVERRIDE) == stored["planHash"])
            if approved and opened:
                if mine is not None and current and not mine.get("applied"):
                    stored["clusters"][step.cluster] = {**mine, "applied": True}
                    await self.store.patch_annotations(*key, {PLAN: plans.dumps(stored)})
                self._set_waiting(key, step.cluster, None)
                why = "approved" if closed is None else "overrides the maintenance windows"
                log.info(
                    "HelmApp %s/%s: plan %s %s, %s proceeds", *key, stored["planHash"], why, step.describe(),
                    extra={"helmapp": f"{key[0]}/{key[1]}", "cluster": step.cluster, "planHash": stored["planHash"]},
                )  # fmt: skip
                return None
            if not current or (mine or {}).get("applied"):
                stored = plans.with_entry(stored, entry)
                await self.store.patch_annotations(*key, {PLAN: plans.dumps(stored)})
        h, ref = stored["planHash"], f"{key[0]}/{key[1]}"
        if not approved:
            self._set_waiting(key, step.cluster, "approval")
            note = f"; then {closed.message()}" if closed is not None else ""
            msg = (
                f"awaiting approval of plan {h}: {plans.plan_summary(stored)}{note}"
                f" (helmops plan {ref}; helmops approve {ref} --plan {h})"
            )
            return ActionResult(False, AWAITING, msg)
        assert closed is not None
        self._set_waiting(key, step.cluster, "window")
        if self.requeue is not None and closed.opens is not None:
            self.requeue(key, max(0.0, (closed.opens - self.clock()).total_seconds()) + 0.5)
        msg = (
            f"maintenance window: {closed.message()}; plan {h}: {plans.plan_summary(stored)}"
            f" (run it now: helmops approve {ref} --plan {h} --override)"
        )
        return ActionResult(False, OUTSIDE_WINDOW, msg)

    async def _entry(self, step: Step) -> dict[str, Any]:
        """The cluster's plan for this step (cached by desired fingerprint and deployed revision)."""
        spec = step.spec
        live = step.classification.release
        fingerprint = spec.labels.get(FINGERPRINT_LABEL, "") if spec is not None else ""
        revision = live.revision if live is not None else 0
        cache_key = (step.helmapp, step.cluster, step.namespace, step.name, str(step.action), fingerprint, revision)
        if (hit := self._cache.get(cache_key)) is not None:
            self._cache.move_to_end(cache_key)
            return hit
        core = getattr(step.tools, "core", None) if step.tools is not None else None
        record = await deployed_record(core, step.namespace, step.name, revision) if live is not None else None
        meta = ((record or {}).get("chart") or {}).get("metadata") or {}
        old_values = (record or {}).get("config") if record is not None else None
        old_manifest = str((record or {}).get("manifest") or "")
        name = str(meta.get("name") or "")
        if spec is not None and not name:
            name = await asyncio.to_thread(chart_name, spec.chart_path)
        secrets = tuple(s for s in (spec.redact if spec is not None else ()) if s)
        if spec is not None and step.action is not Action.CORRECT_DRIFT:
            values = plans.values_changes(old_values if isinstance(old_values, dict) else {}, spec.values, secrets)
            manifest = await self.renderer.render(spec)
            objects = plans.manifest_changes(old_manifest, manifest, step.namespace)
            to = spec.chart_version
        elif step.action is Action.UNINSTALL:
            values, to = None, ""
            objects = plans.manifest_changes(old_manifest, "", step.namespace)
        else:  # drift correction, recovery: back to what is deployed
            values, objects, to = None, {"added": [], "changed": [], "removed": []}, str(meta.get("version") or "")
        entry = plans.cluster_plan(
            cluster=step.cluster,
            release=f"{step.namespace}/{step.name}",
            action=str(step.action),
            chart=name,
            version_from=str(meta.get("version") or "") if record is not None else "",
            version_to=to,
            fingerprint=fingerprint,
            values=values,
            objects=objects,
        )
        self._cache[cache_key] = entry
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return entry


__all__ = ["AWAITING", "INVALID", "OUTSIDE_WINDOW", "HelmAppStore", "PromotionGate", "Renderer", "cluster_labels"]
