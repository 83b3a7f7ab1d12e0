"""The safe-promotion gates of ``helmops run``, in the order the executor asks them."""

from __future__ import annotations

from collections.abc import Callable

from helmops.promotion.gate import HelmAppStore, PromotionGate
from helmops.promotion.render import HelmTemplate
from helmops.promotion.settings import PLAN, PROMOTED, READY_SINCE
from helmops.reconcile.executor import Gate

#: annotations the controller writes: not worth a reconcile of the HelmApp that carries them.
CONTROLLER_ANNOTATIONS = (PLAN, READY_SINCE, PROMOTED)


def gates(
    store: HelmAppStore, helm: str = "helm", requeue: Callable[[tuple[str, str], float], None] | None = None
) -> list[Gate]:
    """``requeue``: the work queue's ``add_after``, so a HelmApp held by a window is reconciled as it opens."""
    return [PromotionGate(store, HelmTemplate(helm), requeue=requeue)]


__all__ = ["CONTROLLER_ANNOTATIONS", "gates"]
