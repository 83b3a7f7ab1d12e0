"""helmops.reconcile.uninstall: uninstall of a deleted HelmApp's release or an orphan, against a fake driver."""

from __future__ import annotations

import pytest
from action_fakes import CALL, FakeDriver, FakeReleases, helm_error, release, step, tools
from pyhelm3 import errors as helm_errors

from helmops.reconcile import uninstall
from helmops.reconcile.classify import Action, Classification, Phase
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import HelmCall


async def test_uninstall_success() -> None:
    res = await uninstall.run(tools(), step(Action.UNINSTALL, name="web", namespace="prod"))
    assert res == ActionResult(True, "Uninstalled", "uninstalled release prod/web")
    assert res.revision is None and res.extra_events == ()


async def test_uninstall_of_an_orphan_says_why() -> None:
    res = await uninstall.run(tools(), step(Action.UNINSTALL, name="web", namespace="prod", orphan=True))
    assert res == ActionResult(True, "Uninstalled", "uninstalled release prod/web: no longer this HelmApp's release")


@pytest.mark.parametrize("orphan", [False, True])
@pytest.mark.parametrize("cls", [helm_errors.Error, helm_errors.ReleaseNotFoundError, helm_errors.ConnectionError])
async def test_uninstall_failure_is_a_result(orphan: bool, cls: type[helm_errors.Error]) -> None:
    err = "Error: uninstallation completed with 1 error(s): context deadline exceeded"
    driver = FakeDriver(fail=helm_error(err + "\n", cls))
    res = await uninstall.run(tools(driver), step(Action.UNINSTALL, name="web", namespace="prod", orphan=orphan))
    assert res == ActionResult(False, "UninstallFailed", f"uninstall of release prod/web failed: {err}", error=err)


@pytest.mark.parametrize(
    ("call", "tenant"),
    [
        (CALL, "tenant-x"),
        (HelmCall(timeout_seconds=60, service_account="sa", service_account_namespace="team", tenant=""), "team"),
    ],
)
async def test_uninstall_passes_the_helm_call(call: HelmCall, tenant: str) -> None:
    driver = FakeDriver()
    await uninstall.run(tools(driver), step(Action.UNINSTALL, name="web", namespace="prod", call=call))
    (sent,) = driver.calls
    assert sent.method == "uninstall"
    assert sent.args == ("web", "prod")
    assert sent.kwargs == {
        "timeout_seconds": call.timeout_seconds,
        "service_account": call.service_account,
        "service_account_namespace": call.service_account_namespace,
        "tenant": tenant,
    }


async def test_uninstall_uses_the_step_release_not_the_classification() -> None:
    """The step names the release to remove, whatever release the classification describes."""
    driver, releases = FakeDriver(), FakeReleases()
    c = Classification(Phase.IN_SYNC, release("deployed", name="other", namespace="elsewhere"))
    s = step(Action.UNINSTALL, classification=c, name="old-name", namespace="old-ns", orphan=True)
    await uninstall.run(tools(driver, releases), s)
    assert driver.calls[0].args == ("old-name", "old-ns")
    assert releases.reads == []


async def test_uninstall_does_not_catch_non_helm_errors() -> None:
    with pytest.raises(RuntimeError):
        await uninstall.run(tools(FakeDriver(fail=RuntimeError("x"))), step(Action.UNINSTALL))
