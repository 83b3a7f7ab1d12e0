"""One mutating helm action as data: what ``decide`` picked for one (HelmApp, cluster), with everything the
action needs to run, and the small Protocols of what it runs against.

Every action module (``install``, ``upgrade``, ``recover``, ``rollback``, ``uninstall``) has the same
signature, ``async def run(tools: ClusterTools, step: Step) -> ActionResult``, and only the executor
(:mod:`helmops.reconcile.executor`) calls them: that is what makes it the one place for a gate, timing,
metrics and Events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from helmops.helm.driver import ReleaseOutcome, ReleaseSpec
from helmops.reconcile.classify import Action, Classification, Decision
from helmops.reconcile.release import ReleaseReader
from helmops.reconcile.result import ActionResult


class ReleaseDriver(Protocol):
    """The helm commands that change a release (implemented by :class:`helmops.helm.driver.HelmDriver`)."""

    def holds(self, namespace: str, name: str) -> bool: ...

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome: ...

    async def recover(
        self,
        name: str,
        namespace: str,
        *,
        timeout_seconds: int,
        service_account: str | None,
        history_max: int,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> ReleaseOutcome | None: ...

    async def rollback(
        self,
        name: str,
        namespace: str,
        revision: int,
        *,
        force: bool,
        timeout_seconds: int,
        service_account: str | None,
        history_max: int,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> None: ...

    async def uninstall(
        self,
        name: str,
        namespace: str,
        *,
        timeout_seconds: int,
        service_account: str | None,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> None: ...


class ReleaseHistory(Protocol):
    """Helm's storage Secrets of one cluster, for the one hand edit helmops makes to them: dropping the
    failed revision a drift correction left behind (``correctDrift.keepFailHistory`` off)."""

    async def drop_failed(self, namespace: str, name: str, after: int) -> bool: ...


@dataclass(frozen=True)
class ClusterTools:
    """What an action runs against on one cluster."""

    driver: ReleaseDriver
    releases: ReleaseReader
    history: ReleaseHistory | None = None
    #: the cluster's CoreV1Api (kubernetes.aio), for gates that read the deployed release record.
    core: Any = None


@dataclass(frozen=True)
class HelmCall:
    """Who helm acts as and how long it may take, for the actions that have no :class:`ReleaseSpec`."""

    timeout_seconds: int
    service_account: str | None
    #: where ``service_account`` lives (the HelmApp's namespace).
    service_account_namespace: str
    history_max: int = 2
    #: whom the helm slot is charged to (the HelmApp's namespace).
    tenant: str = ""

    @classmethod
    def of(cls, spec: ReleaseSpec) -> HelmCall:
        return cls(
            timeout_seconds=spec.timeout_seconds,
            service_account=spec.service_account,
            service_account_namespace=spec.service_account_namespace or spec.namespace,
            history_max=spec.history_max,
            tenant=spec.slot_tenant,
        )


@dataclass(frozen=True)
class Step:
    """One action on one release for one (HelmApp, cluster)."""

    #: "reconcile", "finalize" or "cleanup": which path decided it (named in the decision log line).
    verb: str
    #: the HelmApp (namespace, name).
    helmapp: tuple[str, str]
    #: the cluster id for logs ("namespace/name", or "local").
    cluster: str
    #: "" for the local cluster, else "cluster NAME in namespace NS" (prefixed to Event messages).
    where: str
    namespace: str
    name: str
    classification: Classification
    decision: Decision
    call: HelmCall
    #: INSTALL/UPGRADE: the release to apply.
    spec: ReleaseSpec | None = None
    #: CORRECT_DRIFT: correctDrift.force / keepFailHistory.
    force: bool = False
    keep_fail_history: bool = False
    #: UNINSTALL of a release that is no longer this HelmApp's (renamed, moved, cluster untargeted).
    orphan: bool = False
    #: appended to the Event message (the chart that was applied).
    event_suffix: str = ""
    #: set by the executor for its gates: what the action would run against.
    tools: ClusterTools | None = None

    @property
    def action(self) -> Action:
        return self.decision.action

    def describe(self) -> str:
        return f"{self.action} of release {self.namespace}/{self.name}" + (f" on {self.cluster}" if self.where else "")


#: an action module's entry point.
ActionFn = Callable[[ClusterTools, Step], Awaitable[ActionResult]]

__all__ = ["ActionFn", "ClusterTools", "HelmCall", "ReleaseDriver", "ReleaseHistory", "Step"]
