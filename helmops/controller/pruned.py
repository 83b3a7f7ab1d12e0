"""Fields the API server pruned from a HelmApp (issue 17): when the HelmApp was applied with kubectl, its
last-applied annotation still holds what the user wrote, so a misspelled key the schema dropped can be named
(:func:`helmops.api.unknown.pruned_fields`, bounded). One warning Event and log line per distinct finding."""

from __future__ import annotations

import logging

from helmops.api.keys import Key
from helmops.api.objects import HelmApp
from helmops.api.unknown import pruned_fields
from helmops.controller.base import ReconcilerBase
from helmops.reconcile import ActionResult

log = logging.getLogger("helmops.controller")

__all__ = ["report_pruned"]

MAX_NAMED = 10


async def report_pruned(ctl: ReconcilerBase, key: Key, obj: HelmApp) -> list[str]:
    """Reports the pruned fields of ``obj`` (Event + log line); returns them."""
    found = pruned_fields(obj.to_dict())
    if found:
        more = f" and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
        msg = "fields dropped by the API server (unknown to the HelmApp schema): " + ", ".join(found[:MAX_NAMED]) + more
        log.warning("HelmApp %s/%s: %s", *key, msg, extra={"helmapp": f"{key[0]}/{key[1]}"})
        # its own Event slot ("HelmApp spec: …"), so other Events of the HelmApp do not make it repeat
        await ctl.events.post(obj, ActionResult(False, "UnknownFields", msg), "", "HelmApp spec")
    return found
