"""helmops.reconcile.install: upgrade --install of an absent release, against a fake driver."""

from __future__ import annotations

import pytest
from action_fakes import FakeDriver, FakeReleases, helm_error, spec, step, tools
from pyhelm3 import errors as helm_errors

from helmops.helm.driver import ReleaseOutcome
from helmops.reconcile import install
from helmops.reconcile.classify import Action
from helmops.reconcile.result import ActionResult


async def test_install_success_reports_revision() -> None:
    driver = FakeDriver(outcome=ReleaseOutcome(1, "deployed"))
    res = await install.run(tools(driver), step(Action.INSTALL))
    assert res == ActionResult(True, "Installed", "installed chart version 1.2.3 as revision 1", revision=1)
    assert [c.method for c in driver.calls] == ["install_or_upgrade"]


async def test_install_passes_the_step_spec_unchanged() -> None:
    """timeout, serviceAccount (and its namespace), history_max and tenant travel in the ReleaseSpec itself."""
    driver = FakeDriver()
    release_spec = spec(
        timeout_seconds=33, service_account="sa", service_account_namespace="sa-ns", history_max=9, tenant="t"
    )
    await install.run(tools(driver), step(Action.INSTALL, release_spec=release_spec))
    (call,) = driver.calls
    assert call.args == (release_spec,) and call.kwargs == {}
    sent = call.args[0]
    assert sent is release_spec
    assert (sent.timeout_seconds, sent.service_account, sent.service_account_namespace, sent.history_max) == (
        33,
        "sa",
        "sa-ns",
        9,
    )
    assert sent.slot_tenant == "t"


@pytest.mark.parametrize(
    "cls",
    [
        helm_errors.Error,
        helm_errors.FailedToRenderChartError,
        helm_errors.ResourceAlreadyExistsError,
        helm_errors.ConnectionError,
        helm_errors.CommandCancelledError,
    ],
)
async def test_install_failure_is_a_result(cls: type[helm_errors.Error]) -> None:
    driver = FakeDriver(fail=helm_error("Error: INSTALL FAILED: boom\n  details here\n", cls))
    res = await install.run(tools(driver), step(Action.INSTALL))
    err = "Error: INSTALL FAILED: boom; details here"
    assert res == ActionResult(
        False, "InstallFailed", f"install of chart version 1.2.3 failed: {err}", revision=None, error=err
    )
    assert res.extra_events == ()


async def test_install_empty_stderr_names_the_error_class() -> None:
    driver = FakeDriver(fail=helm_error("", helm_errors.ChartNotFoundError))
    res = await install.run(tools(driver), step(Action.INSTALL))
    assert res.error == "ChartNotFoundError"
    assert res.message == "install of chart version 1.2.3 failed: ChartNotFoundError"


async def test_install_does_not_catch_non_helm_errors() -> None:
    driver = FakeDriver(fail=RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        await install.run(tools(driver), step(Action.INSTALL))


async def test_install_does_not_read_the_release() -> None:
    releases = FakeReleases()
    await install.run(tools(FakeDriver(), releases), step(Action.INSTALL))
    assert releases.reads == []


async def test_install_needs_a_spec() -> None:
    s = step(Action.INSTALL)
    s = type(s)(**{**s.__dict__, "spec": None})
    with pytest.raises(AssertionError):
        await install.run(tools(), s)
