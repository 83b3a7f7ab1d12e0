"""Action: recover a release stuck in pending-*/uninstalling that nobody is finishing."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import HelmDriver
from helmops.reconcile.classify import Classification, Phase
from helmops.reconcile.result import ActionResult, helm_error_text


async def recover(
    driver: HelmDriver,
    c: Classification,
    *,
    timeout_seconds: int,
    service_account: str | None,
    history_max: int,
    service_account_namespace: str | None = None,
    tenant: str | None = None,
) -> ActionResult:
    """pending-upgrade/rollback → rollback to the last revision; pending-install/uninstalling → uninstall
    (pyhelm3's ``get_proceedable_revision``). The next reconcile installs or upgrades as usual."""
    assert c.release is not None
    name, ns = c.release.name, c.release.namespace
    how = "rolled back" if c.phase in (Phase.PENDING_UPGRADE, Phase.PENDING_ROLLBACK) else "uninstalled"
    try:
        out = await driver.recover(
            name,
            ns,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            service_account_namespace=service_account_namespace,
            history_max=history_max,
            tenant=tenant,
        )
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        return ActionResult(False, "RecoverFailed", f"recovering release stuck in {c.phase} failed: {err}", error=err)
    msg = f"release {ns}/{name} was stuck in {c.phase} (revision {c.release.revision}); {how} it"
    extra: tuple[tuple[str, str], ...] = ()
    if out is not None and how == "rolled back":
        msg += f" to a new revision {out.revision}"
        extra = (("RolledBack", msg),)
    return ActionResult(True, "ReleaseRecovered", msg, revision=out.revision if out else None, extra_events=extra)
