"""The one place a mutating helm action runs: install, upgrade, recover, drift correction and uninstall —
for reconcile, finalize and clean-up alike.

:meth:`Executor.run` is the single entry point: it asks the gate, times the action, counts it in the
metrics, logs its outcome and posts its Events. Nothing else in helmops calls an action module or a
mutating helm command, so a rule that must hold for every change (an approval, a maintenance window, a
rollout budget) is added here, once, as a :class:`Gate`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from helmops.reconcile import install, recover, rollback, uninstall, upgrade
from helmops.reconcile.classify import MUTATING, Action, Classification, Decision
from helmops.reconcile.result import ActionResult
from helmops.reconcile.step import ActionFn, ClusterTools, Step
from helmops.runtime import metrics

log = logging.getLogger("helmops.controller")

#: the action modules, by the action ``decide`` picks.
ACTIONS: Mapping[Action, ActionFn] = {
    Action.INSTALL: install.run,
    Action.UPGRADE: upgrade.run,
    Action.RECOVER: recover.run,
    Action.CORRECT_DRIFT: rollback.run,
    Action.UNINSTALL: uninstall.run,
}

#: the ``action`` label of the helm metrics (helm's own verb for a drift correction).
METRIC_LABEL: Mapping[Action, str] = {
    Action.INSTALL: "install",
    Action.UPGRADE: "upgrade",
    Action.RECOVER: "recover",
    Action.CORRECT_DRIFT: "rollback",
    Action.UNINSTALL: "uninstall",
}

#: posts an action's Events on its HelmApp: (result, message suffix).
Report = Callable[[ActionResult, str], Awaitable[None]]


class Gate(Protocol):
    """May this action run now? None: yes; otherwise why not (the action is not run, the caller reports the
    returned result and retries later). ``step.tools`` is what the action would run against."""

    async def hold(self, step: Step) -> ActionResult | None: ...


def log_decision(
    verb: str,
    helmapp: tuple[str, str],
    namespace: str,
    name: str,
    c: Classification,
    d: Decision,
    *,
    cluster: str,
    where: str = "",
    **extra: str,
) -> None:
    """One structured line per decision — reconcile, finalize or clean-up, acting or not."""
    log.info(
        "%s %s/%s: release %s/%s %s -> %s (%s)%s",
        verb, *helmapp, namespace, name, c.phase, d.action, d.reason, f" on {where}" if where else "",
        extra={
            "helmapp": f"{helmapp[0]}/{helmapp[1]}",
            "release": f"{namespace}/{name}",
            "phase": str(c.phase),
            "action": str(d.action),
            **extra,
            "cluster": cluster,
        },
    )  # fmt: skip


class Executor:
    """Runs one :class:`Step` at a time per call; safe to share between all workers and clusters."""

    def __init__(self, gate: Gate | None = None, *, gates: Sequence[Gate] = ()) -> None:
        #: the rules every action passes, in order; the first that holds it wins (none: run at once).
        self.gates: tuple[Gate, ...] = (*((gate,) if gate is not None else ()), *gates)

    async def run(self, step: Step, tools: ClusterTools, report: Report) -> ActionResult:
        """Runs the action ``step`` names against ``tools`` and reports it; never raises for a helm failure
        (that is an ``ActionResult`` with ``ok=False``)."""
        if step.action not in MUTATING:
            raise ValueError(f"{step.action} is not an action the executor runs")
        if self.gates:
            gated = dataclasses.replace(step, tools=tools)
            for gate in self.gates:
                if (held := await gate.hold(gated)) is not None:
                    held = dataclasses.replace(held, held=True)
                    log.info("%s %s/%s: %s held: %s", step.verb, *step.helmapp, step.describe(), held.message)
                    await report(held, "")
                    return held
        label = METRIC_LABEL[step.action]
        start = time.monotonic()
        metrics.HELM_ACTIVE.inc()
        try:
            res = await ACTIONS[step.action](tools, step)
        finally:
            metrics.HELM_ACTIVE.dec()
            metrics.HELM_ACTION_SECONDS.labels(label).observe(time.monotonic() - start)
        outcome = "success" if res.ok else "failure"
        metrics.HELM_ACTIONS.labels(label, outcome).inc()
        metrics.HELM_OUTCOME_SECONDS.labels(label, outcome).observe(time.monotonic() - start)
        if step.action is Action.CORRECT_DRIFT:
            metrics.DRIFT_CORRECTIONS.labels(outcome).inc()
            log.info(
                "drift correction %s/%s: %s",
                *step.helmapp,
                res.message,
                extra={"helmapp": f"{step.helmapp[0]}/{step.helmapp[1]}", "action": "rollback"},
            )
        await report(res, step.event_suffix)
        return res


__all__ = ["ACTIONS", "METRIC_LABEL", "Executor", "Gate", "Report", "log_decision"]
