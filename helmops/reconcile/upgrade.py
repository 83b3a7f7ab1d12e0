"""Action: upgrade a deployed-but-out-of-sync or failed release. Never uninstalls on failure."""

from __future__ import annotations

import dataclasses

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import HelmDriver, ReleaseSpec
from helmops.reconcile.result import ActionResult, helm_error_text


async def upgrade(driver: HelmDriver, spec: ReleaseSpec) -> ActionResult:
    """Fleet's upgrade path always takes ownership; ``--atomic`` rolls a failed upgrade back."""
    what = f"chart version {spec.chart_version}"
    try:
        out = await driver.install_or_upgrade(dataclasses.replace(spec, take_ownership=True))
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        extra: tuple[tuple[str, str], ...] = ()
        if spec.atomic and "rolled back" in err.lower():
            extra = (("RolledBack", f"upgrade to {what} failed and helm rolled the release back (atomic)"),)
        return ActionResult(False, "UpgradeFailed", f"upgrade to {what} failed: {err}", error=err, extra_events=extra)
    return ActionResult(True, "Upgraded", f"upgraded to {what}, revision {out.revision}", revision=out.revision)
