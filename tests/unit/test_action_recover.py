"""helmops.reconcile.recover: a release stuck in pending-*/uninstalling, against a fake driver and reader."""

from __future__ import annotations

import pytest
from action_fakes import CALL, FakeDriver, FakeReleases, helm_error, release, step, tools
from pyhelm3 import errors as helm_errors

from helmops.helm.driver import ReleaseOutcome
from helmops.reconcile import recover
from helmops.reconcile.classify import Action, Classification, Phase
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import HelmCall


def stuck(phase: Phase, revision: int = 4) -> Classification:
    return Classification(phase, release(str(phase), revision=revision), stale=True)


@pytest.mark.parametrize("phase", [Phase.PENDING_UPGRADE, Phase.PENDING_ROLLBACK])
async def test_rollback_out_of_pending_reports_new_revision_and_rolled_back(phase: Phase) -> None:
    driver = FakeDriver(recover_outcome=ReleaseOutcome(5, "deployed"))
    res = await recover.run(tools(driver), step(Action.RECOVER, classification=stuck(phase)))
    msg = f"release apps/rel was stuck in {phase} (revision 4); rolled back it to a new revision 5"
    assert res == ActionResult(True, "ReleaseRecovered", msg, revision=5, extra_events=(("RolledBack", msg),))


async def test_rollback_without_outcome_has_no_revision_and_no_rolled_back() -> None:
    driver = FakeDriver(recover_outcome=None)
    res = await recover.run(tools(driver), step(Action.RECOVER, classification=stuck(Phase.PENDING_UPGRADE)))
    assert res == ActionResult(
        True, "ReleaseRecovered", "release apps/rel was stuck in pending-upgrade (revision 4); rolled back it"
    )


@pytest.mark.parametrize("phase", [Phase.PENDING_INSTALL, Phase.UNINSTALLING])
@pytest.mark.parametrize("outcome", [None, ReleaseOutcome(9, "uninstalled")])
async def test_uninstall_out_of_pending_install_or_uninstalling(phase: Phase, outcome: ReleaseOutcome | None) -> None:
    driver = FakeDriver(recover_outcome=outcome)
    res = await recover.run(tools(driver), step(Action.RECOVER, classification=stuck(phase)))
    assert res.ok and res.reason == "ReleaseRecovered"
    assert res.message == f"release apps/rel was stuck in {phase} (revision 4); uninstalled it"
    assert res.extra_events == ()  # no RolledBack for an uninstall
    assert res.revision == (outcome.revision if outcome else None)


@pytest.mark.parametrize(
    ("call", "tenant"),
    [
        (CALL, "tenant-x"),
        # no tenant: the helm slot is charged to the service account's namespace (the HelmApp's)
        (HelmCall(timeout_seconds=15, service_account=None, service_account_namespace="team", history_max=2), "team"),
    ],
)
async def test_recover_passes_the_helm_call(call: HelmCall, tenant: str) -> None:
    driver = FakeDriver()
    c = Classification(Phase.PENDING_UPGRADE, release("pending-upgrade", name="stuck", namespace="ns1"), stale=True)
    await recover.run(tools(driver), step(Action.RECOVER, classification=c, call=call, name="stuck", namespace="ns1"))
    (sent,) = driver.calls
    assert sent.method == "recover"
    assert sent.args == ("stuck", "ns1")
    assert sent.kwargs == {
        "timeout_seconds": call.timeout_seconds,
        "service_account": call.service_account,
        "service_account_namespace": call.service_account_namespace,
        "history_max": call.history_max,
        "tenant": tenant,
    }


@pytest.mark.parametrize("still", ["pending-upgrade", "pending-rollback", "pending-install"])
async def test_failed_recover_while_still_pending_is_a_failure(still: str) -> None:
    driver = FakeDriver(fail=helm_error("Error: no deployed releases\n", helm_errors.ReleaseNotFoundError))
    releases = FakeReleases(release(still, revision=4))
    res = await recover.run(tools(driver, releases), step(Action.RECOVER, classification=stuck(Phase.PENDING_UPGRADE)))
    err = "Error: no deployed releases"
    assert res == ActionResult(
        False, "RecoverFailed", f"recovering release stuck in pending-upgrade failed: {err}", error=err
    )
    assert releases.reads == [("apps", "rel")]


async def test_failed_rollback_that_left_the_release_failed_is_recovered_anyway() -> None:
    err = "Error: rollback failed: cannot patch Deployment"
    driver = FakeDriver(fail=helm_error(err))
    releases = FakeReleases(release("failed", revision=6))
    res = await recover.run(tools(driver, releases), step(Action.RECOVER, classification=stuck(Phase.PENDING_UPGRADE)))
    assert res == ActionResult(
        True,
        "ReleaseRecovered",
        "release apps/rel is no longer stuck (now failed, revision 6); "
        f"recovering release stuck in pending-upgrade failed: {err}",
        revision=6,
    )
    assert res.error is None and res.extra_events == ()


async def test_failed_recover_with_the_release_gone_is_recovered_anyway() -> None:
    err = "Error: uninstall: timed out"
    driver = FakeDriver(fail=helm_error(err))
    releases = FakeReleases(None)
    res = await recover.run(tools(driver, releases), step(Action.RECOVER, classification=stuck(Phase.UNINSTALLING)))
    assert res == ActionResult(
        True,
        "ReleaseRecovered",
        f"release apps/rel is no longer stuck (now absent, revision -); recovering release stuck in uninstalling "
        f"failed: {err}",
        revision=None,
    )


async def test_success_does_not_read_the_release_again() -> None:
    releases = FakeReleases(release("failed"))
    await recover.run(tools(FakeDriver(), releases), step(Action.RECOVER, classification=stuck(Phase.PENDING_UPGRADE)))
    assert releases.reads == []


async def test_recover_does_not_catch_non_helm_errors() -> None:
    releases = FakeReleases(release("failed"))
    with pytest.raises(RuntimeError):
        await recover.run(
            tools(FakeDriver(fail=RuntimeError("x")), releases),
            step(Action.RECOVER, classification=stuck(Phase.PENDING_UPGRADE)),
        )
    assert releases.reads == []
