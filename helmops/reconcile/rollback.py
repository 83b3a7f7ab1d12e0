"""Action: correct drift by rolling a release back to its current revision (Fleet's ``correctDrift``).

``helm rollback <release> <current revision>`` re-applies the manifest Helm recorded, as a new revision
with the same chart, values and labels (so the fingerprint still matches and no upgrade follows).
``--force`` per ``correctDrift.force``. A failed attempt leaves a ``failed`` revision behind (and the
current one ``superseded``); unless ``keepFailHistory`` the caller's ``drop_failed`` removes it again, so
the history keeps only real deployments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import HelmDriver, helm_timeout, impersonation_flags
from helmops.reconcile.result import ActionResult, helm_error_text


async def rollback_current(
    driver: HelmDriver,
    name: str,
    namespace: str,
    revision: int,
    *,
    force: bool,
    keep_fail_history: bool,
    timeout_seconds: int,
    history_max: int,
    service_account: str | None,
    service_account_namespace: str | None,
    drop_failed: Callable[[str, str, int], Awaitable[bool]] | None = None,
    what: str = "",
    tenant: str | None = None,
) -> ActionResult:
    """``drop_failed(namespace, name, after_revision)`` deletes failed revisions newer than ``revision``
    (True if one was removed); called only on failure without ``keep_fail_history``."""
    async with driver._call(
        namespace,
        name,
        timeout_seconds=timeout_seconds,
        flags=[],
        cluster_flags=impersonation_flags(service_account_namespace or namespace, service_account),
        history_max=history_max,
        tenant=tenant or service_account_namespace,
    ):
        try:
            await driver.command.rollback(
                name,
                revision,
                force=force,
                namespace=namespace,
                timeout=f"{helm_timeout(timeout_seconds)}s",
            )
        except helm_errors.Error as exc:
            err = helm_error_text(exc)
            note = ""
            if not keep_fail_history and drop_failed is not None:
                try:
                    if await drop_failed(namespace, name, revision):
                        note = " (failed revision removed from history; set correctDrift.keepFailHistory to keep it)"
                except Exception as drop_exc:  # the correction already failed; say so, don't mask it
                    note = f" (could not remove the failed revision: {drop_exc})"
            return ActionResult(
                False,
                "DriftCorrectionFailed",
                f"correcting drift{what} by rolling back to revision {revision} failed: {err}{note}",
                error=err,
            )
    return ActionResult(
        True,
        "DriftCorrected",
        f"corrected drift{what}: rolled release {namespace}/{name} back to revision {revision}"
        + (" (--force)" if force else ""),
        revision=revision,
    )


__all__ = ["rollback_current"]
