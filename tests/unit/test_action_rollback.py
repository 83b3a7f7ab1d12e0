"""helmops.reconcile.rollback: drift correction (helm rollback to the current revision), against a fake driver
and a fake storage history."""

from __future__ import annotations

import pytest
from action_fakes import CALL, FakeDriver, FakeHistory, helm_error, release, step, tools
from pyhelm3 import errors as helm_errors

from helmops.reconcile import rollback
from helmops.reconcile.classify import Action, Classification, Phase
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import HelmCall

DRIFT = "Deployment apps/web modified"
DROPPED = " (failed revision removed from history; set correctDrift.keepFailHistory to keep it)"


def drifted(revision: int = 4, drift: str = DRIFT) -> Classification:
    return Classification(Phase.DRIFTED, release("deployed", revision=revision), drift=drift)


async def test_correction_success() -> None:
    driver, history = FakeDriver(), FakeHistory()
    res = await rollback.run(tools(driver, history=history), step(Action.CORRECT_DRIFT, classification=drifted(4)))
    assert res == ActionResult(
        True, "DriftCorrected", f"corrected drift of {DRIFT}: rolled release apps/rel back to revision 4", revision=4
    )
    assert res.extra_events == ()
    assert history.calls == []  # nothing to drop after a success


async def test_correction_success_with_force_says_so() -> None:
    driver = FakeDriver()
    res = await rollback.run(tools(driver), step(Action.CORRECT_DRIFT, classification=drifted(4), force=True))
    assert res.message == f"corrected drift of {DRIFT}: rolled release apps/rel back to revision 4 (--force)"
    assert driver.calls[0].kwargs["force"] is True


async def test_correction_without_drift_text() -> None:
    res = await rollback.run(tools(), step(Action.CORRECT_DRIFT, classification=drifted(2, drift="")))
    assert res.message == "corrected drift: rolled release apps/rel back to revision 2"


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize(
    ("call", "tenant"),
    [
        (CALL, "tenant-x"),
        (HelmCall(timeout_seconds=0, service_account=None, service_account_namespace="team"), "team"),
    ],
)
async def test_correction_passes_the_helm_call(force: bool, call: HelmCall, tenant: str) -> None:
    driver = FakeDriver()
    await rollback.run(tools(driver), step(Action.CORRECT_DRIFT, classification=drifted(11), call=call, force=force))
    (sent,) = driver.calls
    assert sent.method == "rollback"
    assert sent.args == ("rel", "apps", 11)
    assert sent.kwargs == {
        "force": force,
        "timeout_seconds": call.timeout_seconds,
        "service_account": call.service_account,
        "service_account_namespace": call.service_account_namespace,
        "history_max": call.history_max,
        "tenant": tenant,
    }


@pytest.mark.parametrize("cls", [helm_errors.Error, helm_errors.InvalidResourceError, helm_errors.ConnectionError])
async def test_failure_drops_the_failed_revision_when_keep_fail_history_is_off(cls: type[helm_errors.Error]) -> None:
    err = "Error: cannot patch Deployment web"
    history = FakeHistory(dropped=True)
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err, cls)), history=history),
        step(Action.CORRECT_DRIFT, classification=drifted(4), keep_fail_history=False),
    )
    assert res == ActionResult(
        False,
        "DriftCorrectionFailed",
        f"correcting drift of {DRIFT} by rolling back to revision 4 failed: {err}{DROPPED}",
        error=err,
    )
    assert history.calls == [("apps", "rel", 4)]


async def test_failure_with_nothing_dropped_adds_no_note() -> None:
    err = "Error: boom"
    history = FakeHistory(dropped=False)
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err)), history=history), step(Action.CORRECT_DRIFT, classification=drifted(4))
    )
    assert res.message == f"correcting drift of {DRIFT} by rolling back to revision 4 failed: {err}"
    assert history.calls == [("apps", "rel", 4)]


async def test_failure_keeps_history_when_keep_fail_history_is_on() -> None:
    err = "Error: boom"
    history = FakeHistory()
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err)), history=history),
        step(Action.CORRECT_DRIFT, classification=drifted(4), keep_fail_history=True),
    )
    assert res == ActionResult(
        False,
        "DriftCorrectionFailed",
        f"correcting drift of {DRIFT} by rolling back to revision 4 failed: {err}",
        error=err,
    )
    assert history.calls == []


async def test_failure_without_a_history_store() -> None:
    err = "Error: boom"
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err)), history=None), step(Action.CORRECT_DRIFT, classification=drifted(4))
    )
    assert not res.ok and res.message.endswith(f"failed: {err}")


@pytest.mark.parametrize("drop_exc", [RuntimeError("409 Conflict"), ValueError("bad record")])
async def test_a_failing_drop_is_reported_and_does_not_mask_the_failure(drop_exc: Exception) -> None:
    err = "Error: cannot patch Deployment web"
    history = FakeHistory(fail=drop_exc)
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err)), history=history), step(Action.CORRECT_DRIFT, classification=drifted(4))
    )
    assert res == ActionResult(
        False,
        "DriftCorrectionFailed",
        f"correcting drift of {DRIFT} by rolling back to revision 4 failed: {err}"
        f" (could not remove the failed revision: {drop_exc})",
        error=err,
    )
    assert history.calls == [("apps", "rel", 4)]


async def test_failure_with_force_is_worded_like_without() -> None:
    err = "Error: boom"
    res = await rollback.run(
        tools(FakeDriver(fail=helm_error(err)), history=FakeHistory(dropped=False)),
        step(Action.CORRECT_DRIFT, classification=drifted(4), force=True),
    )
    assert res.message == f"correcting drift of {DRIFT} by rolling back to revision 4 failed: {err}"
    assert "--force" not in res.message


async def test_correction_does_not_catch_non_helm_errors() -> None:
    history = FakeHistory()
    with pytest.raises(RuntimeError):
        await rollback.run(
            tools(FakeDriver(fail=RuntimeError("bug")), history=history),
            step(Action.CORRECT_DRIFT, classification=drifted(4)),
        )
    assert history.calls == []
