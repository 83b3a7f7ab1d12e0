"""Action: install an absent release."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.reconcile.result import ActionResult, helm_error_text
from helmops.reconcile.step import ClusterTools, Step


async def run(tools: ClusterTools, step: Step) -> ActionResult:
    """``upgrade --install`` of a new release; ``--take-ownership`` only with the HelmApp's takeOwnership
    (Fleet's install path)."""
    spec = step.spec
    assert spec is not None, "install needs the release spec"
    what = f"chart version {spec.chart_version}"
    try:
        out = await tools.driver.install_or_upgrade(spec)
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        return ActionResult(False, "InstallFailed", f"install of {what} failed: {err}", error=err)
    msg = f"installed {what} as revision {out.revision}"
    return ActionResult(True, "Installed", msg, revision=out.revision, manifest=out.manifest)
