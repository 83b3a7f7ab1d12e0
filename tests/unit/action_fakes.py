"""Fakes for the action modules and the executor (helmops.reconcile.{install,upgrade,recover,rollback,uninstall}):
a ``ReleaseDriver`` that records every call and raises what it is told to, a ``ReleaseReader`` and a
``ReleaseHistory``, and builders for ``Step``/``ReleaseSpec``. Imported by the ``test_action_*`` and
``test_executor`` modules (``tests/unit`` is on ``sys.path`` for them: it has no ``__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyhelm3 import errors as helm_errors

from helmops.helm.driver import ReleaseOutcome, ReleaseSpec
from helmops.reconcile.classify import Action, Classification, Decision, Phase
from helmops.reconcile.release import ReleaseInfo
from helmops.reconcile.step import ClusterTools, HelmCall, ReleaseHistory, Step

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def helm_error(stderr: str, cls: type[helm_errors.Error] = helm_errors.Error) -> helm_errors.Error:
    """A pyhelm3 error as pyhelm3 raises it (the message is helm's stderr)."""
    return cls(1, b"", stderr.encode())


@dataclass
class DriverCall:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class FakeDriver:
    """A :class:`helmops.reconcile.step.ReleaseDriver` that records calls; ``fail`` is raised by every
    mutating method, otherwise ``outcome`` is returned (``recover``'s ``None`` via ``recover_outcome``)."""

    outcome: ReleaseOutcome = field(default_factory=lambda: ReleaseOutcome(7, "deployed"))
    recover_outcome: ReleaseOutcome | None = field(default_factory=lambda: ReleaseOutcome(8, "deployed"))
    fail: BaseException | None = None
    calls: list[DriverCall] = field(default_factory=list)

    def holds(self, namespace: str, name: str) -> bool:
        return False

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(DriverCall(method, args, kwargs))
        if self.fail is not None:
            raise self.fail

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome:
        self._record("install_or_upgrade", spec)
        return self.outcome

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
    ) -> ReleaseOutcome | None:
        self._record(
            "recover",
            name,
            namespace,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            history_max=history_max,
            service_account_namespace=service_account_namespace,
            tenant=tenant,
        )
        return self.recover_outcome

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
    ) -> None:
        self._record(
            "rollback",
            name,
            namespace,
            revision,
            force=force,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            history_max=history_max,
            service_account_namespace=service_account_namespace,
            tenant=tenant,
        )

    async def uninstall(
        self,
        name: str,
        namespace: str,
        *,
        timeout_seconds: int,
        service_account: str | None,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self._record(
            "uninstall",
            name,
            namespace,
            timeout_seconds=timeout_seconds,
            service_account=service_account,
            service_account_namespace=service_account_namespace,
            tenant=tenant,
        )


@dataclass
class FakeReleases:
    """A :class:`helmops.reconcile.release.ReleaseReader` returning one fixed answer, recording reads."""

    info: ReleaseInfo | None = None
    reads: list[tuple[str, str]] = field(default_factory=list)

    async def read(self, namespace: str, name: str) -> ReleaseInfo | None:
        self.reads.append((namespace, name))
        return self.info


@dataclass
class FakeHistory:
    """A :class:`helmops.reconcile.step.ReleaseHistory`: answers ``dropped`` or raises ``fail``."""

    dropped: bool = True
    fail: BaseException | None = None
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    async def drop_failed(self, namespace: str, name: str, after: int) -> bool:
        self.calls.append((namespace, name, after))
        if self.fail is not None:
            raise self.fail
        return self.dropped


def tools(
    driver: FakeDriver | None = None, releases: FakeReleases | None = None, history: ReleaseHistory | None = None
) -> ClusterTools:
    return ClusterTools(driver=driver or FakeDriver(), releases=releases or FakeReleases(), history=history)


def release(status: str = "deployed", revision: int = 4, name: str = "rel", namespace: str = "apps") -> ReleaseInfo:
    return ReleaseInfo(name, namespace, revision, status, "fp", NOW)


def spec(**overrides: Any) -> ReleaseSpec:
    base: dict[str, Any] = {
        "name": "rel",
        "namespace": "apps",
        "chart_path": Path("/charts/demo"),
        "chart_version": "1.2.3",
        "values": {},
        "timeout_seconds": 120,
        "service_account": "deployer",
        "service_account_namespace": "team",
        "history_max": 5,
        "tenant": "team",
    }
    base.update(overrides)
    return ReleaseSpec(**base)


#: the HelmCall the non-spec actions get: every field distinct from its default.
CALL = HelmCall(
    timeout_seconds=90, service_account="deployer", service_account_namespace="team", history_max=6, tenant="tenant-x"
)

_PHASE_OF_ACTION = {
    Action.INSTALL: Phase.ABSENT,
    Action.UPGRADE: Phase.OUT_OF_SYNC,
    Action.RECOVER: Phase.PENDING_UPGRADE,
    Action.CORRECT_DRIFT: Phase.DRIFTED,
    Action.UNINSTALL: Phase.IN_SYNC,
}


def step(
    action: Action,
    *,
    classification: Classification | None = None,
    release_spec: ReleaseSpec | None = None,
    call: HelmCall = CALL,
    force: bool = False,
    keep_fail_history: bool = False,
    orphan: bool = False,
    event_suffix: str = "",
    name: str = "rel",
    namespace: str = "apps",
) -> Step:
    """A Step for ``action`` on release apps/rel of HelmApp team/app on the local cluster."""
    if classification is None:
        phase = _PHASE_OF_ACTION.get(action, Phase.IN_SYNC)
        status = {Phase.PENDING_UPGRADE: "pending-upgrade"}.get(phase, "deployed")
        rel = None if phase is Phase.ABSENT else release(status, name=name, namespace=namespace)
        classification = Classification(
            phase, rel, drift="Deployment apps/web modified" if phase is Phase.DRIFTED else ""
        )
    if release_spec is None and action in (Action.INSTALL, Action.UPGRADE):
        release_spec = spec(name=name, namespace=namespace)
    return Step(
        verb="reconcile",
        helmapp=("team", "app"),
        cluster="local",
        where="",
        namespace=namespace,
        name=name,
        classification=classification,
        decision=Decision(action, "test"),
        call=call,
        spec=release_spec,
        force=force,
        keep_fail_history=keep_fail_history,
        orphan=orphan,
        event_suffix=event_suffix,
    )
