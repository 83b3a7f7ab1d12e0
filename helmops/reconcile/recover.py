"""Action: recover a release stuck in pending-*/uninstalling that nobody is finishing."""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.reconcile.classify import Phase
from helmops.reconcile.result import ActionResult, helm_error_text
from helmops.reconcile.step import ClusterTools, Step


async def run(tools: ClusterTools, step: Step) -> ActionResult:
    """pending-upgrade/rollback → rollback to the last revision; pending-install/uninstalling → uninstall
    (pyhelm3's ``get_proceedable_revision``). The next reconcile installs or upgrades as usual."""
    c = step.classification
    assert c.release is not None, "recover needs the stuck release"
    name, ns = c.release.name, c.release.namespace
    how = "rolled back" if c.phase in (Phase.PENDING_UPGRADE, Phase.PENDING_ROLLBACK) else "uninstalled"
    call = step.call
    try:
        out = await tools.driver.recover(
            name,
            ns,
            timeout_seconds=call.timeout_seconds,
            service_account=call.service_account,
            service_account_namespace=call.service_account_namespace,
            history_max=call.history_max,
            tenant=call.tenant or call.service_account_namespace,
        )
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        failed = ActionResult(False, "RecoverFailed", f"recovering release stuck in {c.phase} failed: {err}", error=err)
        return await recovered_anyway(tools, ns, name, failed)
    msg = f"release {ns}/{name} was stuck in {c.phase} (revision {c.release.revision}); {how} it"
    extra: tuple[tuple[str, str], ...] = ()
    if out is not None and how == "rolled back":
        msg += f" to a new revision {out.revision}"
        extra = (("RolledBack", msg),)
    return ActionResult(True, "ReleaseRecovered", msg, revision=out.revision if out else None, extra_events=extra)


async def recovered_anyway(tools: ClusterTools, namespace: str, name: str, res: ActionResult) -> ActionResult:
    """A rollback out of pending-* can fail (helm will not adopt objects the pending manifest lacks) yet
    still leave the release proceedable (``failed``): then the stuck state is gone and the next reconcile
    upgrades it like any failed release."""
    after = await tools.releases.read(namespace, name)
    if after is not None and after.status.startswith("pending-"):
        return res
    state = after.status if after else "absent"
    return ActionResult(
        True,
        "ReleaseRecovered",
        f"release {namespace}/{name} is no longer stuck (now {state}, revision "
        f"{after.revision if after else '-'}); {res.message}",
        revision=after.revision if after else None,
    )
