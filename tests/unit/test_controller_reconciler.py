"""The reconcile flow with every boundary faked: Kubernetes, helm, chart source and values."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kube_fake import KubeFake
from pydantic import ValidationError
from pyhelm3 import errors as helm_errors

from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.controller.reconciler import Reconciler, ReconcilerConfig
from helmops.desired.release import (
    Checked,
    DesiredError,
    FetchedChart,
    Values,
    build_release,
)
from helmops.helm.driver import ReleaseOutcome, ReleaseSpec
from helmops.kubeio.kube import FINALIZER
from helmops.reconcile.release import FINGERPRINT_LABEL, OWNER_LABEL, ReleaseInfo

KEY = ("team", "app")


class FakeKube(KubeFake):
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj: dict[str, Any] | None = obj
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.deleted_namespaces: list[str] = []

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj)

    async def add_finalizer(self, obj: Mapping[str, Any]) -> None:
        assert self.obj is not None
        self.obj["metadata"].setdefault("finalizers", []).append(FINALIZER)

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None:
        self.obj = None  # deletion completes

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        assert self.obj is not None
        self.status_patches.append(dict(patch))
        status = {k: v for k, v in patch["status"].items()}
        self.obj["status"] = status
        return self.obj

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    async def ensure_namespace_metadata(self, name: str, labels: Any, annotations: Any) -> bool:
        self.ns_meta = (name, dict(labels), dict(annotations))
        return True

    async def namespace_exists(self, name: str) -> bool:
        return True

    async def delete_namespace(self, name: str) -> bool:
        self.deleted_namespaces.append(name)
        return True


class FakeReleases:
    def __init__(self) -> None:
        self.info: ReleaseInfo | None = None
        self.extra: list[ReleaseInfo] = []

    async def read(self, namespace: str, name: str) -> ReleaseInfo | None:
        if self.info is not None and (self.info.namespace, self.info.name) == (namespace, name):
            return self.info
        return next((r for r in self.extra if (r.namespace, r.name) == (namespace, name)), None)


class FakeDriver:
    def __init__(self, releases: FakeReleases) -> None:
        self.releases = releases
        self.calls: list[str] = []
        self.fail: helm_errors.Error | None = None

    def holds(self, namespace: str, name: str) -> bool:
        return False

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome:
        self.calls.append("upgrade")
        if self.fail:
            raise self.fail
        rev = (self.releases.info.revision if self.releases.info else 0) + 1
        self.releases.info = ReleaseInfo(
            spec.name,
            spec.namespace,
            rev,
            "deployed",
            spec.labels[FINGERPRINT_LABEL],
            datetime.now(tz=UTC),
            dict(spec.labels),
        )
        return ReleaseOutcome(rev, "deployed")

    async def uninstall(self, name: str, namespace: str, **_: Any) -> None:
        self.calls.append("uninstall")
        info = self.releases.info
        if info is not None and (info.namespace, info.name) == (namespace, name):
            self.releases.info = None
        self.releases.extra = [r for r in self.releases.extra if (r.namespace, r.name) != (namespace, name)]

    async def recover(self, name: str, namespace: str, **_: Any) -> ReleaseOutcome | None:
        self.calls.append("recover")
        return None


class BasicSpec:
    """The SpecChecker fake: a chart is required; release name and namespace from the raw spec."""

    def check(self, helmapp: Mapping[str, Any]) -> Checked:
        try:
            app = parse_helmapp(helmapp)
        except ValidationError as exc:
            return Checked(None, [str(exc).splitlines()[0]])
        if not app.spec.helm.chart:
            return Checked(app, ["spec.helm.chart is required"])
        return Checked(app, [])


class FakeCharts:
    def __init__(self) -> None:
        self.version = "1.0.0"
        self.error: DesiredError | None = None

    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        if self.error:
            raise self.error
        return FetchedChart("hello", self.version, f"sha256:{self.version}", Path("/c.tgz"))


class FakeValues:
    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        values = dict(helmapp.spec.helm.values or {})
        return Values(values, f"sha256:{sorted(values.items())}")


def _obj(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "team", "generation": 1, "resourceVersion": "1", "uid": "u"},
        "spec": {"defaultNamespace": "target", "helm": {"repo": "http://r/", "chart": "hello"}, **spec},
    }


def _setup(obj: dict[str, Any]) -> tuple[Reconciler, FakeKube, FakeDriver, FakeCharts, FakeReleases]:
    kube, releases, charts = FakeKube(obj), FakeReleases(), FakeCharts()
    driver = FakeDriver(releases)
    r = Reconciler(
        kube,
        driver,
        releases,
        BasicSpec(),
        charts,
        FakeValues(),  # type: ignore[arg-type]
        ReconcilerConfig(resync_seconds=600),
    )
    return r, kube, driver, charts, releases


def _cond(kube: FakeKube, ctype: str) -> dict[str, Any]:
    assert kube.obj is not None
    return next(c for c in kube.obj["status"]["conditions"] if c["type"] == ctype)


async def test_install_then_noop_without_status_churn() -> None:
    r, kube, driver, _, _ = _setup(_obj())
    assert await r.reconcile(KEY) == 600
    assert driver.calls == ["upgrade"] and FINALIZER in kube.obj["metadata"]["finalizers"]  # type: ignore[index]
    assert [e[0] for e in kube.events] == ["Installed"] and "sha256:1.0.0" in kube.events[0][1]
    assert _cond(kube, "Ready")["status"] == "True"
    writes = len(kube.status_patches)
    assert await r.reconcile(KEY) == 600
    assert driver.calls == ["upgrade"] and len(kube.status_patches) == writes


async def test_new_version_upgrades_with_event() -> None:
    r, kube, driver, charts, _ = _setup(_obj())
    await r.reconcile(KEY)
    charts.version = "1.1.0"
    await r.reconcile(KEY)
    assert driver.calls == ["upgrade", "upgrade"]
    assert [e[0] for e in kube.events] == ["Installed", "GotNewChartVersion", "Upgraded"]
    assert kube.obj["status"]["version"] == "1.1.0"  # type: ignore[index]


async def test_upgrade_failure_backs_off_and_keeps_release() -> None:
    r, kube, driver, charts, releases = _setup(_obj())
    await r.reconcile(KEY)
    before = releases.info
    charts.version = "2.0.0"
    driver.fail = helm_errors.FailedToRenderChartError(1, b"", b"Error: execution error: boom")
    delays = [await r.reconcile(KEY) for _ in range(3)]
    assert delays == [5, 10, 20]
    assert releases.info == before and "uninstall" not in driver.calls
    ready = _cond(kube, "Ready")
    assert ready["status"] == "False" and ready["message"].startswith("cluster local in namespace team: ")
    assert [e[0] for e in kube.events].count("UpgradeFailed") == 1  # not repeated on identical retries
    driver.fail = None
    assert await r.reconcile(KEY) == 600
    assert _cond(kube, "Ready")["status"] == "True"


async def test_chart_error_is_not_accepted() -> None:
    r, kube, driver, charts, _ = _setup(_obj())
    charts.error = DesiredError('chart "nope" not found in http://r/', retryable=False)
    assert await r.reconcile(KEY) == 5
    acc = _cond(kube, "Accepted")
    assert (
        acc["status"] == "False"
        and acc["message"] == 'cluster local in namespace team: chart "nope" not found in http://r/'
    )
    assert _cond(kube, "Stalled")["status"] == "True" and driver.calls == []


async def test_invalid_spec() -> None:
    obj = _obj()
    obj["spec"]["helm"] = {}
    r, kube, driver, _, _ = _setup(obj)
    await r.reconcile(KEY)
    assert _cond(kube, "Accepted")["status"] == "False" and driver.calls == []


@pytest.mark.parametrize(
    ("spec", "uninstalled", "deleted_ns"),
    [
        ({}, True, []),
        ({"keepResources": True, "deleteNamespace": True, "namespace": "mine"}, False, []),
        ({"deleteNamespace": True, "namespace": "mine"}, True, ["mine"]),
        ({"deleteNamespace": True, "namespace": "kube-system"}, True, []),
        ({"deleteNamespace": True, "namespace": "fleet-local"}, True, []),
    ],
)
async def test_deletion(spec: dict[str, Any], uninstalled: bool, deleted_ns: list[str]) -> None:
    r, kube, driver, _, releases = _setup(_obj(**spec))
    await r.reconcile(KEY)
    assert releases.info is not None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert await r.reconcile(KEY) is None
    assert ("uninstall" in driver.calls) is uninstalled
    assert kube.deleted_namespaces == deleted_ns
    assert kube.obj is None  # finalizer removed


async def test_an_invalid_helmapp_being_deleted_is_still_finalized() -> None:
    """The spec stopped validating after the install (here: a releaseName helm would refuse, and a field of
    the wrong type): the release named as written is uninstalled and the finalizer removed."""
    r, kube, driver, _, releases = _setup(_obj())
    await r.reconcile(KEY)
    assert releases.info is not None and releases.info.name == "app"
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["releaseName"] = "app"
    kube.obj["spec"]["helm"]["timeoutSeconds"] = "soon"
    writes = len(kube.status_patches)
    await r.reconcile(KEY)  # refused: status and Event, nothing run
    assert _cond(kube, "Accepted")["status"] == "False" and driver.calls == ["upgrade"]
    assert len(kube.status_patches) > writes and kube.events[-1][0] == "InvalidSpec"
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await r.reconcile(KEY) is None
    assert driver.calls == ["upgrade", "uninstall"] and releases.info is None and kube.obj is None


async def test_deletion_of_gone_release() -> None:
    r, kube, driver, _, releases = _setup(_obj())
    await r.reconcile(KEY)
    releases.info = None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert await r.reconcile(KEY) is None
    assert "uninstall" not in driver.calls and kube.obj is None


async def test_failed_install_is_retried_not_uninstalled() -> None:
    r, _kube, driver, _, releases = _setup(_obj())
    # our own failed install: helm wrote the release labels with its first record
    releases.info = ReleaseInfo("app", "target", 1, "failed", None, datetime.now(tz=UTC), {OWNER_LABEL: "team.app"})
    await r.reconcile(KEY)
    assert driver.calls == ["upgrade"] and releases.info.status == "deployed"


async def test_release_of_another_helmapp_is_left_alone() -> None:
    from helmops.reconcile.release import OWNER_LABEL

    r, kube, driver, _, releases = _setup(_obj())
    other = ReleaseInfo("app", "target", 4, "deployed", "x", datetime.now(tz=UTC), {OWNER_LABEL: "else.where"})
    releases.info = other
    await r.reconcile(KEY)
    acc = _cond(kube, "Accepted")
    assert acc["status"] == "False" and "belongs to another HelmApp (else.where)" in acc["message"]
    assert driver.calls == []
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert await r.reconcile(KEY) is None
    assert driver.calls == [] and releases.info is other and kube.obj is None


def test_values_unpack_and_build_release_forms() -> None:
    v = Values({"a": 1}, "sha256:x", ("secret",))
    values, digest = v
    assert values == {"a": 1} and digest == "sha256:x" and "secret" not in repr(v)
    chart = FetchedChart("hello", "1.0.0", "sha256:c", Path("/c.tgz"))
    a = build_release(parse_helmapp(_obj()), release_name="r", release_namespace="n", chart=chart, values=v)
    b = build_release(
        parse_helmapp(_obj()),
        release_name="r",
        release_namespace="n",
        chart=chart,
        values={"a": 1},
        values_digest="sha256:x",
    )
    assert a.fingerprint == b.fingerprint and a.release.redact == ("secret",) and b.release.redact == ()


async def test_paused_takes_no_helm_action() -> None:
    r, kube, driver, _, releases = _setup(_obj(paused=True))
    assert await r.reconcile(KEY) == 600
    assert driver.calls == [] and releases.info is None
    assert kube.obj["status"]["display"]["state"] == "OutOfSync"  # type: ignore[index]
    kube.obj["spec"]["paused"] = False  # type: ignore[index]
    await r.reconcile(KEY)
    assert driver.calls == ["upgrade"] and _cond(kube, "Ready")["status"] == "True"


async def test_renamed_release_uninstalls_the_old_one() -> None:
    r, kube, driver, _, releases = _setup(_obj())
    await r.reconcile(KEY)
    old = releases.info
    assert old is not None and old.labels[OWNER_LABEL] == "team.app"
    releases.extra = [old]  # still in the cluster after the rename
    kube.obj["spec"]["helm"]["releaseName"] = "renamed"  # type: ignore[index]
    releases.info = None
    await r.reconcile(KEY)
    assert driver.calls == ["upgrade", "upgrade", "uninstall"]
    assert releases.extra == [] and releases.info is not None and releases.info.name == "renamed"
    assert [e[0] for e in kube.events][-2:] == ["Installed", "Uninstalled"]


async def test_timeout_above_the_cap_is_clamped_and_said_once() -> None:
    obj = _obj()
    obj["spec"]["helm"]["timeoutSeconds"] = 7200
    r, kube, driver, _, releases = _setup(obj)
    r.config.max_timeout_seconds = 600
    seen: list[int] = []
    upgrade = driver.install_or_upgrade

    async def record(spec: ReleaseSpec) -> ReleaseOutcome:
        seen.append(spec.timeout_seconds)
        assert spec.slot_tenant == "team"  # the helm slot is charged to the HelmApp's namespace
        return await upgrade(spec)

    driver.install_or_upgrade = record  # type: ignore[method-assign]
    await r.reconcile(KEY)
    releases.info = None  # force another helm call
    await r.reconcile(KEY)
    assert seen == [600, 600]
    clamped = [m for reason, m in kube.events if reason == "TimeoutClamped"]
    assert len(clamped) == 1 and "7200" in clamped[0] and "600s" in clamped[0]
    assert _cond(kube, "Ready")["status"] == "True"


async def test_existing_namespace_is_not_created_again_for_a_service_account() -> None:
    """helm's --create-namespace needs cluster-wide rights even when the namespace exists: a serviceAccount
    confined to its own namespace could never deploy. Only a missing namespace is left for helm to create."""
    seen: list[bool] = []
    for exists in (True, False):
        r, kube, driver, _, _ = _setup(_obj(serviceAccount="deployer"))
        original = driver.install_or_upgrade

        async def spy(spec: ReleaseSpec, original: Any = original) -> ReleaseOutcome:
            seen.append(spec.create_namespace)
            return await original(spec)

        async def namespace_exists(name: str, exists: bool = exists) -> bool:
            return exists

        driver.install_or_upgrade = spy  # type: ignore[method-assign]
        kube.namespace_exists = namespace_exists  # type: ignore[method-assign]
        await r.reconcile(KEY)
    assert seen == [False, True]
