"""What ``helmops run`` builds from this package: the executor gate and the soak promoter, on the controller's
Kubernetes access layer (``helmops.kubeio.kube.Kube``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from helmops import GROUP, PLURAL, VERSION
from helmops.promotion.gate import PromotionGate
from helmops.promotion.keys import PLAN, PROMOTED, READY_SINCE
from helmops.promotion.render import HelmTemplate
from helmops.promotion.soak import Promoter
from helmops.reconcile.executor import Gate

log = logging.getLogger("helmops.controller")

#: annotations the controller writes: not worth a reconcile of the HelmApp that carries them.
CONTROLLER_ANNOTATIONS = (PLAN, READY_SINCE, PROMOTED)

Requeue = Callable[[tuple[str, str], float], None]


class Promotion:
    """The gate (for ``Executor(gates=...)``) and the soak promoter; :meth:`after_reconcile` runs after each
    reconcile of a HelmApp. ``requeue``: the work queue's ``add_after`` (a window opens, a soak ends)."""

    def __init__(self, kube: Any, helm: str = "helm", requeue: Requeue | None = None) -> None:
        self.requeue: Requeue = requeue or (lambda key, delay: None)
        self.gate = PromotionGate(kube, HelmTemplate(helm), requeue=self.requeue)
        self.promoter = Promoter(KubeStore(kube), self.requeue)

    @property
    def gates(self) -> list[Gate]:
        return [self.gate]

    def observe(self, body: Mapping[str, Any]) -> None:
        """Every HelmApp watch event: which HelmApps follow a promotion source."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self.promoter.observe(key, meta.get("annotations") or {}, present=not meta.get("deletionTimestamp"))

    def forget(self, key: tuple[str, str]) -> None:
        self.promoter.observe(key, {}, present=False)

    async def after_reconcile(self, key: tuple[str, str], started: float) -> None:
        """``started``: the reconcile's start (time.monotonic). Failures are logged, never the reconcile's."""
        self.gate.settle(key, started)
        try:
            await self.promoter.after_reconcile(key)
        except Exception as exc:
            log.warning("HelmApp %s/%s: promotion check failed: %s", *key, exc, extra={"helmapp": f"{key[0]}/{key[1]}"})
            self.requeue(key, 30.0)


class KubeStore:
    """:class:`helmops.promotion.soak.PromotionStore` on ``Kube``."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = await self.kube.get_helmapp(namespace, name)
        return obj

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        await self.kube.patch_annotations(namespace, name, annotations)

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        await self.kube.event(obj, reason, message, warning=warning)

    async def patch_helmapp(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        from kubernetes.aio.client.exceptions import ApiException

        try:
            await self.kube.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, dict(patch), _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True


__all__ = ["CONTROLLER_ANNOTATIONS", "KubeStore", "Promotion"]
