"""Action: upgrade a deployed-but-out-of-sync or failed release. Never uninstalls on failure."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.reconcile.result import ActionResult, helm_error_text
from helmops.reconcile.step import ClusterTools, Step


async def run(tools: ClusterTools, step: Step) -> ActionResult:
    """``--take-ownership`` only when the HelmApp sets takeOwnership (Fleet's upgrade path always sets it,
    which would let any upgrade take objects another release owns); ``--atomic`` rolls a failed upgrade
    back."""
    spec = step.spec
    assert spec is not None, "upgrade needs the release spec"
    what = f"chart version {spec.chart_version}"
    try:
        out = await tools.driver.install_or_upgrade(spec)
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        extra: tuple[tuple[str, str], ...] = ()
        if spec.atomic and "rolled back" in err.lower():
            extra = (("RolledBack", f"upgrade to {what} failed and helm rolled the release back (atomic)"),)
        return ActionResult(False, "UpgradeFailed", f"upgrade to {what} failed: {err}", error=err, extra_events=extra)
    msg = f"upgraded to {what}, revision {out.revision}"
    return ActionResult(True, "Upgraded", msg, revision=out.revision, manifest=out.manifest)
