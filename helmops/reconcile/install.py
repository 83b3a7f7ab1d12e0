"""Action: install an absent release."""

from __future__ import annotations

import dataclasses

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import HelmDriver, ReleaseSpec
from helmops.reconcile.result import ActionResult, helm_error_text


async def install(driver: HelmDriver, spec: ReleaseSpec, *, take_ownership: bool) -> ActionResult:
    """``upgrade --install`` of a new release; takeOwnership as the spec says (Fleet's install path)."""
    what = f"chart version {spec.chart_version}"
    try:
        out = await driver.install_or_upgrade(dataclasses.replace(spec, take_ownership=take_ownership))
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        return ActionResult(False, "InstallFailed", f"install of {what} failed: {err}", error=err)
    return ActionResult(True, "Installed", f"installed {what} as revision {out.revision}", revision=out.revision)
