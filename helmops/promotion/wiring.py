"""What ``helmops run`` builds from this package: the executor gate and the soak promoter, on the controller's
Kubernetes access layer (``helmops.kubeio.kube.Kube``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from helmops import GROUP, PLURAL, VERSION
from helmops.promotion.gate import HelmAppStore, PromotionGate
from helmops.promotion.keys import PLAN, PROMOTED, READY_SINCE
from helmops.promotion.render import HelmTemplate
from helmops.promotion.soak import Promoter
from helmops.reconcile.executor import Gate

log = logging.getLogger("helmops.controller")

#: annotations the controller writes: not worth a reconcile of the HelmApp that carries them.
CONTROLLER_ANNOTATIONS = (PLAN, READY_SINCE, PROMOTED)

Requeue = Callable[[tuple[str, str], float], None]


def gates(store: HelmAppStore, helm: str = "helm", requeue: Requeue | None = None) -> list[Gate]:
    """``requeue``: the work queue's ``add_after``, so a HelmApp held by a window is reconciled as it opens."""
    return [PromotionGate(store, HelmTemplate(helm), requeue=requeue)]


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


def promoter(kube: Any, requeue: Requeue) -> Promoter:
    return Promoter(KubeStore(kube), requeue)


async def after_reconcile(p: Promoter, key: tuple[str, str]) -> None:
    """The soak promotion's step after a reconcile; its failures are logged, never the reconcile's."""
    try:
        await p.after_reconcile(key)
    except Exception as exc:
        log.warning("HelmApp %s/%s: promotion check failed: %s", *key, exc, extra={"helmapp": f"{key[0]}/{key[1]}"})
        p.requeue(key, 30.0)


__all__ = ["CONTROLLER_ANNOTATIONS", "KubeStore", "after_reconcile", "gates", "promoter"]
