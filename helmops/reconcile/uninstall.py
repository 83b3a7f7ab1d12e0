"""Action: uninstall a release — of a deleted HelmApp, or one that is no longer the HelmApp's (renamed,
moved, or on a cluster it no longer targets)."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.reconcile.result import ActionResult, helm_error_text
from helmops.reconcile.step import ClusterTools, Step


async def run(tools: ClusterTools, step: Step) -> ActionResult:
    call = step.call
    try:
        await tools.driver.uninstall(
            step.name,
            step.namespace,
            timeout_seconds=call.timeout_seconds,
            service_account=call.service_account,
            service_account_namespace=call.service_account_namespace,
            tenant=call.tenant or call.service_account_namespace,
        )
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        return ActionResult(
            False, "UninstallFailed", f"uninstall of release {step.namespace}/{step.name} failed: {err}", error=err
        )
    msg = f"uninstalled release {step.namespace}/{step.name}"
    if step.orphan:
        msg += ": no longer this HelmApp's release"
    return ActionResult(True, "Uninstalled", msg)
