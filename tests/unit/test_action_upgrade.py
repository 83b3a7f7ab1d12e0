"""helmops.reconcile.upgrade: upgrade of a deployed-out-of-sync or failed release, against a fake driver."""

from __future__ import annotations

import pytest
from action_fakes import FakeDriver, helm_error, spec, step, tools
from pyhelm3 import errors as helm_errors

from helmops.helm.driver import ReleaseOutcome
from helmops.reconcile import upgrade
from helmops.reconcile.classify import Action
from helmops.reconcile.result import ActionResult


async def test_upgrade_success_reports_revision() -> None:
    driver = FakeDriver(outcome=ReleaseOutcome(12, "deployed"))
    res = await upgrade.run(tools(driver), step(Action.UPGRADE, release_spec=spec(chart_version="2.0.0")))
    assert res == ActionResult(True, "Upgraded", "upgraded to chart version 2.0.0, revision 12", revision=12)
    assert res.extra_events == ()


async def test_upgrade_passes_the_step_spec_unchanged() -> None:
    driver = FakeDriver()
    release_spec = spec(
        atomic=True, timeout_seconds=44, service_account="sa", service_account_namespace="sa-ns", history_max=3
    )
    await upgrade.run(tools(driver), step(Action.UPGRADE, release_spec=release_spec))
    (call,) = driver.calls
    assert call.method == "install_or_upgrade" and call.args[0] is release_spec and call.kwargs == {}
    assert call.args[0].timeout_seconds == 44 and call.args[0].history_max == 3
    assert call.args[0].service_account == "sa" and call.args[0].service_account_namespace == "sa-ns"


@pytest.mark.parametrize(
    "cls", [helm_errors.Error, helm_errors.InvalidResourceError, helm_errors.FailedToRenderChartError]
)
async def test_upgrade_failure_is_a_result(cls: type[helm_errors.Error]) -> None:
    driver = FakeDriver(fail=helm_error("Error: UPGRADE FAILED: invalid object", cls))
    res = await upgrade.run(tools(driver), step(Action.UPGRADE))
    err = "Error: UPGRADE FAILED: invalid object"
    assert res == ActionResult(
        False, "UpgradeFailed", f"upgrade to chart version 1.2.3 failed: {err}", error=err, extra_events=()
    )


async def test_atomic_upgrade_that_helm_rolled_back_adds_rolled_back_event() -> None:
    stderr = "Error: UPGRADE FAILED: release rel failed, and has been Rolled Back due to atomic being set\n: timed out"
    driver = FakeDriver(fail=helm_error(stderr))
    res = await upgrade.run(tools(driver), step(Action.UPGRADE, release_spec=spec(atomic=True)))
    err = "Error: UPGRADE FAILED: release rel failed, and has been Rolled Back due to atomic being set; : timed out"
    assert not res.ok and res.reason == "UpgradeFailed"
    assert res.error == err
    assert res.message == f"upgrade to chart version 1.2.3 failed: {err}"
    assert res.extra_events == (
        ("RolledBack", "upgrade to chart version 1.2.3 failed and helm rolled the release back (atomic)"),
    )


@pytest.mark.parametrize(
    ("atomic", "stderr"),
    [
        (True, "Error: UPGRADE FAILED: timed out waiting for the condition"),  # atomic, but no rollback happened
        (False, "Error: UPGRADE FAILED: has been rolled back"),  # not atomic: the text alone does not count
    ],
)
async def test_no_rolled_back_event_without_atomic_rollback(atomic: bool, stderr: str) -> None:
    driver = FakeDriver(fail=helm_error(stderr))
    res = await upgrade.run(tools(driver), step(Action.UPGRADE, release_spec=spec(atomic=atomic)))
    assert not res.ok and res.reason == "UpgradeFailed" and res.extra_events == ()


async def test_upgrade_does_not_catch_non_helm_errors() -> None:
    with pytest.raises(ValueError, match="bug"):
        await upgrade.run(tools(FakeDriver(fail=ValueError("bug"))), step(Action.UPGRADE))
