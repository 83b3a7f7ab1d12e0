"""helmops.reconcile.executor: the one place a mutating helm action runs (gate, metrics, Events), and the
guarantee that nothing else in helmops runs one."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from action_fakes import FakeDriver, FakeHistory, FakeReleases, helm_error, release, spec, step, tools
from pyhelm3 import errors as helm_errors

import helmops
from helmops.reconcile import executor as executor_mod
from helmops.reconcile import install, recover, rollback, uninstall, upgrade
from helmops.reconcile.classify import MUTATING, Action, Classification, Phase
from helmops.reconcile.executor import ACTIONS, METRIC_LABEL, Executor
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import ActionFn, ClusterTools, HelmCall, Step
from helmops.runtime import metrics


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[ActionResult, str]] = []

    async def __call__(self, result: ActionResult, suffix: str) -> None:
        self.calls.append((result, suffix))


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def helm_actions(action: str, result: str) -> float:
    return sample("helmops_helm_actions_total", action=action, result=result)


def drift_corrections(result: str) -> float:
    return sample("helmops_drift_corrections_total", result=result)


def durations(action: str) -> float:
    return sample("helmops_helm_action_duration_seconds_count", action=action)


def counters() -> dict[str, float]:
    """Every helm action and drift correction counter, by label."""
    out = {}
    for action in ("install", "upgrade", "recover", "rollback", "uninstall"):
        for result in ("success", "failure"):
            out[f"{action}/{result}"] = helm_actions(action, result)
        out[f"{action}/seconds"] = durations(action)
    for result in ("success", "failure"):
        out[f"drift/{result}"] = drift_corrections(result)
    return out


def steps() -> dict[Action, Step]:
    return {
        Action.INSTALL: step(Action.INSTALL, event_suffix=" (chart demo 1.2.3)"),
        Action.UPGRADE: step(Action.UPGRADE, event_suffix=" (chart demo 1.2.3)"),
        Action.RECOVER: step(
            Action.RECOVER, classification=Classification(Phase.PENDING_INSTALL, release("pending-install"))
        ),
        Action.CORRECT_DRIFT: step(Action.CORRECT_DRIFT),
        Action.UNINSTALL: step(Action.UNINSTALL),
    }


#: the driver method each action calls, and the Event reason of its success and of its failure.
EXPECTED = {
    Action.INSTALL: ("install_or_upgrade", "Installed", "InstallFailed"),
    Action.UPGRADE: ("install_or_upgrade", "Upgraded", "UpgradeFailed"),
    Action.RECOVER: ("recover", "ReleaseRecovered", "RecoverFailed"),
    Action.CORRECT_DRIFT: ("rollback", "DriftCorrected", "DriftCorrectionFailed"),
    Action.UNINSTALL: ("uninstall", "Uninstalled", "UninstallFailed"),
}


def test_action_table_maps_each_mutating_action_to_its_module() -> None:
    assert set(ACTIONS) == set(MUTATING) == set(METRIC_LABEL)
    assert {
        Action.INSTALL: install.run,
        Action.UPGRADE: upgrade.run,
        Action.RECOVER: recover.run,
        Action.CORRECT_DRIFT: rollback.run,
        Action.UNINSTALL: uninstall.run,
    } == ACTIONS
    assert METRIC_LABEL[Action.CORRECT_DRIFT] == "rollback"


@pytest.mark.parametrize("action", sorted(MUTATING))
async def test_runs_exactly_the_mapped_module(action: Action, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Action] = []

    def spy(a: Action) -> ActionFn:
        async def fn(t: ClusterTools, s: Step) -> ActionResult:
            ran.append(a)
            return ActionResult(True, f"R-{a}", "m")

        return fn

    monkeypatch.setattr(executor_mod, "ACTIONS", {a: spy(a) for a in MUTATING})
    reports = Reports()
    res = await Executor().run(steps()[action], tools(), reports)
    assert ran == [action]
    assert res.reason == f"R-{action}"


@pytest.mark.parametrize("action", sorted(MUTATING))
@pytest.mark.parametrize("ok", [True, False])
async def test_runs_action_counts_and_reports(action: Action, ok: bool) -> None:
    method, ok_reason, fail_reason = EXPECTED[action]
    driver = FakeDriver(fail=None if ok else helm_error("Error: boom", helm_errors.InvalidResourceError))
    s = steps()[action]
    label = METRIC_LABEL[action]
    outcome = "success" if ok else "failure"
    before = counters()
    active = sample("helmops_helm_processes_active")
    reports = Reports()

    res = await Executor().run(s, tools(driver, FakeReleases(release("pending-install")), FakeHistory()), reports)

    assert [c.method for c in driver.calls] == [method]
    assert res.ok is ok and res.reason == (ok_reason if ok else fail_reason)
    assert reports.calls == [(res, s.event_suffix)]
    after = counters()
    expected = dict(before)
    expected[f"{label}/{outcome}"] += 1
    expected[f"{label}/seconds"] += 1
    if action is Action.CORRECT_DRIFT:
        expected[f"drift/{outcome}"] += 1
    assert after == expected
    assert sample("helmops_helm_processes_active") == active


async def test_correct_drift_is_counted_as_rollback_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    before_rb, before_dc = helm_actions("rollback", "success"), drift_corrections("success")
    with caplog.at_level("INFO", logger="helmops.controller"):
        res = await Executor().run(steps()[Action.CORRECT_DRIFT], tools(), Reports())
    assert helm_actions("rollback", "success") == before_rb + 1
    assert drift_corrections("success") == before_dc + 1
    assert helm_actions("correct-drift", "success") == 0.0
    lines = [r for r in caplog.records if r.getMessage().startswith("drift correction team/app: ")]
    assert len(lines) == 1 and lines[0].getMessage() == f"drift correction team/app: {res.message}"
    assert lines[0].__dict__["action"] == "rollback" and lines[0].__dict__["helmapp"] == "team/app"


@pytest.mark.parametrize("action", [Action.NONE, Action.WAIT])
async def test_refuses_non_mutating_actions(action: Action) -> None:
    driver, reports = FakeDriver(), Reports()
    before = counters()
    with pytest.raises(ValueError, match=f"{action} is not an action the executor runs"):
        await Executor().run(step(action), tools(driver), reports)
    assert driver.calls == [] and reports.calls == []
    assert counters() == before


class HoldAll:
    def __init__(self) -> None:
        self.asked: list[Step] = []

    async def hold(self, step: Step) -> ActionResult | None:
        self.asked.append(step)
        return ActionResult(False, "ActionHeld", "maintenance window closed")


class AllowAll:
    def __init__(self) -> None:
        self.asked: list[Step] = []

    async def hold(self, step: Step) -> ActionResult | None:
        self.asked.append(step)
        return None


@pytest.mark.parametrize("action", sorted(MUTATING))
async def test_a_holding_gate_prevents_the_action(action: Action, caplog: pytest.LogCaptureFixture) -> None:
    gate, driver, reports = HoldAll(), FakeDriver(), Reports()
    s = steps()[action]
    before = counters()
    with caplog.at_level("INFO", logger="helmops.controller"):
        res = await Executor(gate).run(s, tools(driver), reports)
    assert [dataclasses.replace(a, tools=None) for a in gate.asked] == [s]
    assert driver.calls == []
    assert res == ActionResult(False, "ActionHeld", "maintenance window closed", held=True)
    assert reports.calls == [(res, "")]
    assert counters() == before
    assert any(
        r.getMessage() == f"reconcile team/app: {s.describe()} held: maintenance window closed" for r in caplog.records
    )


async def test_an_allowing_gate_lets_the_action_run() -> None:
    gate, driver, reports = AllowAll(), FakeDriver(), Reports()
    s = steps()[Action.UNINSTALL]
    res = await Executor(gate).run(s, tools(driver), reports)
    assert [dataclasses.replace(a, tools=None) for a in gate.asked] == [s]
    assert [c.method for c in driver.calls] == ["uninstall"]
    assert res.reason == "Uninstalled" and reports.calls == [(res, "")]


async def test_several_gates_are_asked_in_order_and_the_first_hold_wins() -> None:
    first, second, third, driver, reports = AllowAll(), HoldAll(), AllowAll(), FakeDriver(), Reports()
    s = steps()[Action.UPGRADE]
    t = tools(driver)
    res = await Executor(gates=[first, second, third]).run(s, t, reports)
    assert res.reason == "ActionHeld" and driver.calls == [] and third.asked == []
    assert [a.tools for a in first.asked + second.asked] == [t, t]  # gates see what the action would run on


async def test_gate_is_not_asked_for_a_non_mutating_action() -> None:
    gate = HoldAll()
    with pytest.raises(ValueError):
        await Executor(gate).run(step(Action.WAIT), tools(), Reports())
    assert gate.asked == []


async def test_a_bug_in_an_action_propagates_and_releases_the_active_gauge() -> None:
    active = sample("helmops_helm_processes_active")
    before = counters()
    reports = Reports()
    with pytest.raises(RuntimeError, match="bug"):
        await Executor().run(steps()[Action.UPGRADE], tools(FakeDriver(fail=RuntimeError("bug"))), reports)
    assert sample("helmops_helm_processes_active") == active
    assert reports.calls == []
    after = counters()
    assert after["upgrade/success"] == before["upgrade/success"]
    assert after["upgrade/failure"] == before["upgrade/failure"]
    assert after["upgrade/seconds"] == before["upgrade/seconds"] + 1  # the duration is observed in `finally`


# --- the single point: nothing outside helmops/reconcile and helmops/helm runs a mutating helm action ---

PACKAGE = Path(helmops.__file__).parent
#: where mutating helm calls may live: the executor and its action modules, and the helm driver itself.
ALLOWED = ("reconcile", "helm")
DRIVER_METHODS = frozenset({"install_or_upgrade", "rollback", "uninstall", "recover"})
ACTION_MODULES = frozenset({"install", "upgrade", "recover", "rollback", "uninstall"})
ACTION_PACKAGE = "helmops.reconcile"


def mutating_calls(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: what`` for every call of a driver's mutating method, of an action module's ``run``, or
    of the executor's action table, in ``source``."""
    tree = ast.parse(source, filename)
    # names an action module (or its run) is bound to in this file
    modules: set[str] = set()
    runs: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound = alias.asname or alias.name
                if node.module == ACTION_PACKAGE and alias.name in ACTION_MODULES:
                    modules.add(bound)
                elif node.module.removeprefix(ACTION_PACKAGE + ".") in ACTION_MODULES and alias.name == "run":
                    runs.add(bound)
                elif node.module == f"{ACTION_PACKAGE}.executor" and alias.name == "ACTIONS":
                    found.append(f"{filename}:{node.lineno}: imports the executor's ACTIONS table")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.removeprefix(ACTION_PACKAGE + ".") in ACTION_MODULES and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr in DRIVER_METHODS:
                found.append(f"{filename}:{node.lineno}: .{func.attr}(")
            elif func.attr == "run":
                target = ast.unparse(func.value)
                last = target.rsplit(".", 1)[-1]
                if target in modules or (
                    last in ACTION_MODULES and (target == last or target.startswith(ACTION_PACKAGE + "."))
                ):
                    found.append(f"{filename}:{node.lineno}: {target}.run(")
        elif isinstance(func, ast.Name) and func.id in runs:
            found.append(f"{filename}:{node.lineno}: {func.id}( (an action module's run)")
    return found


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ALLOWED)


def test_package_has_files_to_check() -> None:
    files = {p.relative_to(PACKAGE).as_posix() for p in package_files()}
    # the callers of the executor are scanned, the executor's own package is not
    assert "controller/apply.py" in files and "controller/teardown.py" in files
    assert not any(f.startswith(("reconcile/", "helm/")) for f in files)


def test_nothing_outside_reconcile_and_helm_runs_a_mutating_helm_action() -> None:
    found: list[str] = []
    for path in package_files():
        found += mutating_calls(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "async def f(d):\n    await d.install_or_upgrade(spec)\n",
        "async def f(self):\n    await self.driver.rollback('r', 'ns', 3, force=False)\n",
        "async def f(conn):\n    await conn.tools.driver.uninstall('r', 'ns')\n",
        "async def f(t):\n    await t.driver.recover('r', 'ns')\n",
        "from helmops.reconcile import rollback\nasync def f(t, s):\n    await rollback.run(t, s)\n",
        "from helmops.reconcile import install as inst\nasync def f(t, s):\n    await inst.run(t, s)\n",
        "import helmops.reconcile.upgrade\nasync def f(t, s):\n    await helmops.reconcile.upgrade.run(t, s)\n",
        "import helmops.reconcile.uninstall as u\nasync def f(t, s):\n    await u.run(t, s)\n",
        "from helmops.reconcile.recover import run as rec\nasync def f(t, s):\n    await rec(t, s)\n",
        "from helmops.reconcile.executor import ACTIONS\n",
    ],
)
def test_the_scan_finds_a_call_added_anywhere(source: str) -> None:
    assert len(mutating_calls(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "async def f(self, step, conn, report):\n    await self.executor.run(step, conn.tools, report)\n",
        "import asyncio\nasyncio.run(main())\n",
        "import subprocess\nsubprocess.run(['ls'])\n",
        "from helmops.reconcile.executor import Executor, log_decision\n",
    ],
)
def test_the_scan_ignores_other_calls(source: str) -> None:
    assert mutating_calls(source) == []


def test_helm_call_of_a_release_spec() -> None:
    """The HelmCall recover/rollback/uninstall get is the one the release spec implies."""
    s = spec(timeout_seconds=77, service_account="sa", service_account_namespace="team", history_max=4, tenant="t")
    assert HelmCall.of(s) == HelmCall(77, "sa", "team", history_max=4, tenant="t")
    # no service-account namespace: the release namespace; no tenant: the service account's namespace
    bare = spec(namespace="apps", service_account=None, service_account_namespace=None, tenant="")
    assert HelmCall.of(bare) == HelmCall(120, None, "apps", history_max=5, tenant="apps")
    assert HelmCall.of(spec(service_account_namespace="team", tenant="")).tenant == "team"
