"""Action: uninstall the release of a deleted HelmApp."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import HelmDriver
from helmops.reconcile.result import ActionResult, helm_error_text


async def uninstall(
    driver: HelmDriver,
    name: str,
    namespace: str,
    *,
    timeout_seconds: int,
    service_account: str | None,
    service_account_namespace: str | None = None,
    tenant: str | None = None,
) -> ActionResult:
    try:
        await driver.uninstall(
            name,
            namespace,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            service_account_namespace=service_account_namespace,
            tenant=tenant,
        )
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        return ActionResult(
            False, "UninstallFailed", f"uninstall of release {namespace}/{name} failed: {err}", error=err
        )
    return ActionResult(True, "Uninstalled", f"uninstalled release {namespace}/{name}")
