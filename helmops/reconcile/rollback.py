"""Action: correct drift by rolling a release back to its current revision (Fleet's ``correctDrift``).

``helm rollback <release> <current revision>`` re-applies the manifest Helm recorded, as a new revision
with the same chart, values and labels (so the fingerprint still matches and no upgrade follows).
``--force`` per ``correctDrift.force``. A failed attempt leaves a ``failed`` revision behind (and the
current one ``superseded``); unless ``keepFailHistory`` the cluster's :class:`ReleaseHistory` removes it
again, so the history keeps only real deployments.
"""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.reconcile.result import ActionResult, helm_error_text
from helmops.reconcile.step import ClusterTools, Step


async def run(tools: ClusterTools, step: Step) -> ActionResult:
    c = step.classification
    assert c.release is not None, "a drift correction needs the deployed release"
    revision = c.release.revision
    what = f" of {c.drift}" if c.drift else ""
    call = step.call
    try:
        await tools.driver.rollback(
            step.name,
            step.namespace,
            revision,
            force=step.force,
            timeout_seconds=call.timeout_seconds,
            service_account=call.service_account,
            service_account_namespace=call.service_account_namespace,
            history_max=call.history_max,
            tenant=call.tenant or call.service_account_namespace,
        )
    except helm_errors.Error as exc:
        err = helm_error_text(exc)
        note = ""
        if not step.keep_fail_history and tools.history is not None:
            try:
                if await tools.history.drop_failed(step.namespace, step.name, revision):
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
        f"corrected drift{what}: rolled release {step.namespace}/{step.name} back to revision {revision}"
        + (" (--force)" if step.force else ""),
        revision=revision,
    )
