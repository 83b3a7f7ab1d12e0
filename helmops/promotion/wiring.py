"""The safe-promotion gates of ``helmops run``, in the order the executor asks them."""

from __future__ import annotations

from helmops.promotion.gate import HelmAppStore, PromotionGate
from helmops.promotion.render import HelmTemplate
from helmops.promotion.settings import PLAN, PROMOTED, READY_SINCE
from helmops.reconcile.executor import Gate

#: annotations the controller writes: not worth a reconcile of the HelmApp that carries them.
CONTROLLER_ANNOTATIONS = (PLAN, READY_SINCE, PROMOTED)


def gates(store: HelmAppStore, helm: str = "helm") -> list[Gate]:
    return [PromotionGate(store, HelmTemplate(helm))]


__all__ = ["CONTROLLER_ANNOTATIONS", "gates"]
