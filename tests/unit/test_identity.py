"""Which identity each call made on a HelmApp's behalf uses (helmops.clusters.identity), against fakes."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from kube_fake import KubeFake
from kubernetes.aio import client as kclient

from helmops.api.objects import HelmApp
from helmops.clusters.identity import IMPERSONATE_USER, Identity, ImpersonatingClients, service_account_user
from helmops.clusters.live import ACCESS_DENIED, LiveResources
from helmops.controller.reconciler import Reconciler, ReconcilerConfig
from helmops.desired.release import Values
from helmops.drift.monitor import (
    DriftMonitor,
    _Manifest,
)
from helmops.kubeio.kube import FINALIZER
from helmops.kubeio.mapping import Resource, RestMappings
from helmops.policy.source import PolicyUnreadable
from helmops.status import ResourceState
from helmops.values.errors import ValuesError
from helmops.values.kube_reader import OwnNamespaceReader, _problem
from tests.unit.test_controller_reconciler import BasicSpec, FakeCharts, FakeDriver, FakeKube, FakeReleases, FakeValues

KEY = ("team", "app")
CONTROLLER_API = "controller-api"


class Denied(Exception):
    status = 403
    reason = "Forbidden"


class CtlKube(FakeKube):
    """The controller's own Kube: anything done through it is done with the controller's rights."""

    api = CONTROLLER_API
    core = None

    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__(obj)
        self.ns_meta: Any = None


class ActingKube(KubeFake):
    """A Kube over an impersonating client; records what was done and as whom."""

    log: list[tuple[str, str, Any]] = []
    deny = False

    def __init__(self, api: Any) -> None:
        self.api = api

    async def ensure_namespace_metadata(self, name: str, labels: Any, annotations: Any) -> bool:
        if ActingKube.deny:
            raise Denied()
        ActingKube.log.append(("label", name, self.api))
        return True

    async def namespace_exists(self, name: str) -> bool:
        return True

    async def delete_namespace(self, name: str) -> bool:
        if ActingKube.deny:
            raise Denied()
        ActingKube.log.append(("delete", name, self.api))
        return True


class FakeIdentities:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, str, Identity]] = []

    def api_for(self, base: Any, cluster: str, identity: Identity) -> Any:
        self.asked.append((base, cluster, identity))
        if not identity.service_account:
            return base
        return ("as", identity.namespace, identity.service_account)


class RecordingValues(FakeValues):
    def __init__(self) -> None:
        self.apis: list[Any] = []

    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        self.apis.append("render_values")
        return await super().render_values(helmapp, release_namespace)

    async def render_for(self, helmapp: HelmApp, release_namespace: str, cluster: Any, api: Any) -> Values:
        self.apis.append(api)
        return await super().render_values(helmapp, release_namespace)


class FakeRestrictions:
    def __init__(self, items: list[dict[str, Any]] | None = None, error: bool = False) -> None:
        self.items, self.error = items or [], error

    async def list(self, namespace: str) -> list[dict[str, Any]]:
        if self.error:
            raise PolicyUnreadable("GitRepoRestrictions of namespace team could not be listed: HTTP 403 Forbidden")
        return [copy.deepcopy(i) for i in self.items]


def _obj(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "team", "generation": 1, "resourceVersion": "1", "uid": "u"},
        "spec": {"namespace": "target", "helm": {"repo": "http://r/", "chart": "hello"}, **spec},
    }


def _setup(
    obj: dict[str, Any], config: ReconcilerConfig | None = None, restrictions: Any = None
) -> tuple[Reconciler, CtlKube, FakeDriver, RecordingValues, FakeIdentities]:
    ActingKube.log, ActingKube.deny = [], False
    kube, releases = CtlKube(obj), FakeReleases()
    driver, values, identities = FakeDriver(releases), RecordingValues(), FakeIdentities()
    r = Reconciler(
        kube, driver, releases, BasicSpec(), FakeCharts(), values,  # type: ignore[arg-type]
        config or ReconcilerConfig(resync_seconds=600),
        identities=identities,  # type: ignore[arg-type]
        restrictions=restrictions,
    )  # fmt: skip
    r.kube_for = ActingKube
    return r, kube, driver, values, identities


def _cond(kube: FakeKube, ctype: str) -> dict[str, Any]:
    assert kube.obj is not None
    return next(c for c in kube.obj["status"]["conditions"] if c["type"] == ctype)


# --- namespace labels/annotations --------------------------------------------------------------------------
async def test_namespace_labels_are_applied_as_the_service_account() -> None:
    r, kube, _, values, _ = _setup(_obj(serviceAccount="deployer", namespaceLabels={"team": "a"}))
    assert await r.reconcile(KEY) == 600
    assert ActingKube.log == [("label", "target", ("as", "team", "deployer"))]
    assert kube.ns_meta is None  # the controller's own client was not used
    assert values.apis == [("as", "team", "deployer")]  # valuesFrom read as the serviceAccount too
    assert r.identity_of(KEY) == Identity("team", "deployer")


async def test_without_service_account_the_controller_acts_and_values_stay_in_own_namespace() -> None:
    r, kube, _, values, _ = _setup(_obj(namespaceLabels={"team": "a"}))
    await r.reconcile(KEY)
    assert kube.ns_meta == ("target", {"team": "a"}, {}) and ActingKube.log == []
    assert values.apis == ["render_values"]  # the renderer's own-namespace-only path


async def test_denied_namespace_labels_give_condition_event_and_no_content() -> None:
    r, kube, _, _, _ = _setup(_obj(serviceAccount="deployer", namespaceLabels={"secret-ish": "v4lue"}))
    ActingKube.deny = True
    delay = await r.reconcile(KEY)
    assert delay == 5  # retried with backoff
    ready = _cond(kube, "Ready")
    assert ready["status"] == "False"
    expected = "access denied: serviceAccount team/deployer may not get/patch namespaces target"
    assert expected in ready["message"]
    reasons = dict(kube.events)
    assert "AccessDenied" in reasons and expected in reasons["AccessDenied"]
    assert "v4lue" not in str(kube.obj["status"]) and "v4lue" not in str(kube.events)  # type: ignore[index]


# --- deleteNamespace -----------------------------------------------------------------------------------------
async def _deleting(r: Reconciler, kube: CtlKube) -> None:
    await r.reconcile(KEY)
    assert kube.obj is not None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await r.reconcile(KEY)


async def test_delete_namespace_as_the_service_account() -> None:
    r, kube, _, _, _ = _setup(_obj(serviceAccount="deployer", deleteNamespace=True))
    await _deleting(r, kube)
    assert ActingKube.log == [("delete", "target", ("as", "team", "deployer"))]
    assert kube.deleted_namespaces == [] and kube.obj is None


async def test_denied_delete_namespace_keeps_it_and_reports() -> None:
    r, kube, _, _, _ = _setup(_obj(serviceAccount="deployer", deleteNamespace=True))
    await r.reconcile(KEY)
    ActingKube.deny = True
    assert kube.obj is not None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await r.reconcile(KEY)
    assert kube.deleted_namespaces == [] and ActingKube.log == []
    msg = dict(kube.events)["AccessDenied"]
    assert "serviceAccount team/deployer may not delete namespaces target" in msg
    assert kube.obj is None  # the HelmApp's deletion is not held up


async def test_delete_namespace_without_service_account_uses_the_controller() -> None:
    r, kube, _, _, _ = _setup(_obj(deleteNamespace=True))
    await _deleting(r, kube)
    assert kube.deleted_namespaces == ["target"] and ActingKube.log == []


async def test_delete_namespace_refused_by_policy_at_deletion() -> None:
    cfg = ReconcilerConfig(resync_seconds=600, require_service_account=True)
    r, kube, _, _, _ = _setup(_obj(deleteNamespace=True), cfg)
    assert kube.obj is not None
    kube.obj["metadata"]["finalizers"] = [FINALIZER]
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await r.reconcile(KEY)
    assert kube.deleted_namespaces == [] and ActingKube.log == []
    assert "requires a serviceAccount" in dict(kube.events)["PolicyViolation"]


async def test_delete_namespace_with_default_service_account() -> None:
    restr = FakeRestrictions([{"metadata": {"name": "r"}, "defaultServiceAccount": "deployer"}])
    r, kube, _, _, _ = _setup(_obj(deleteNamespace=True), restrictions=restr)
    await _deleting(r, kube)
    assert ActingKube.log == [("delete", "target", ("as", "team", "deployer"))]


# --- policy before anything runs -----------------------------------------------------------------------------
async def test_policy_violation_runs_nothing() -> None:
    restr = FakeRestrictions([{"metadata": {"name": "only-apps"}, "allowedTargetNamespaces": ["apps"]}])
    r, kube, driver, values, _ = _setup(_obj(namespaceLabels={"a": "b"}), restrictions=restr)
    await r.reconcile(KEY)
    assert driver.calls == [] and values.apis == [] and kube.ns_meta is None
    acc = _cond(kube, "Accepted")
    assert acc["status"] == "False" and "allowedTargetNamespaces" in acc["message"]
    assert "GitRepoRestriction only-apps" in dict(kube.events)["PolicyViolation"]


async def test_unreadable_policy_fails_closed() -> None:
    r, kube, driver, _, _ = _setup(_obj(), restrictions=FakeRestrictions(error=True))
    await r.reconcile(KEY)
    assert driver.calls == [] and "could not be listed" in _cond(kube, "Accepted")["message"]


async def test_require_service_account_refuses_and_default_satisfies() -> None:
    cfg = ReconcilerConfig(resync_seconds=600, require_service_account=True)
    r, kube, driver, _, _ = _setup(_obj(), cfg)
    await r.reconcile(KEY)
    assert driver.calls == [] and "--require-service-account" in _cond(kube, "Accepted")["message"]
    restr = FakeRestrictions([{"metadata": {"name": "r"}, "defaultServiceAccount": "deployer"}])
    r, kube, driver, values, _ = _setup(_obj(), cfg, restr)
    specs: list[Any] = []
    inner = driver.install_or_upgrade

    async def spy(spec: Any) -> Any:
        specs.append(spec)
        return await inner(spec)

    driver.install_or_upgrade = spy  # type: ignore[method-assign]
    await r.reconcile(KEY)
    assert driver.calls == ["upgrade"] and specs[0].service_account == "deployer"
    assert specs[0].service_account_namespace == "team" and values.apis == [("as", "team", "deployer")]


# --- readiness -----------------------------------------------------------------------------------------------
class FakeLive:
    def __init__(self) -> None:
        self.apis: list[Any] = []

    async def states(
        self, api: Any, core: Any, cluster: str, ns: str, name: str, rev: int, *, just_applied: bool = False
    ) -> tuple[Any, ...]:
        self.apis.append(api)
        return (ResourceState("v1", "Secret", "victim", "db", "Unknown", f"{ACCESS_DENIED} (get secrets)"),)


async def test_readiness_reads_as_the_service_account_and_reports_denials() -> None:
    r, kube, _, _, _ = _setup(_obj(serviceAccount="deployer"))
    live = FakeLive()
    r.live = live  # type: ignore[assignment]
    await r.reconcile(KEY)
    assert live.apis == [("as", "team", "deployer")]
    msg = dict(kube.events)["AccessDenied"]
    assert "serviceAccount team/deployer may not get 1 of its objects" in msg
    assert _cond(kube, "Ready")["status"] == "False"


async def test_readiness_without_service_account_uses_controller_client() -> None:
    r, _, _, _, _ = _setup(_obj())
    live = FakeLive()
    r.live = live  # type: ignore[assignment]
    await r.reconcile(KEY)
    assert live.apis == [CONTROLLER_API]


async def test_live_states_map_403_to_unknown_without_content(monkeypatch: pytest.MonkeyPatch) -> None:
    from helmops.clusters import live as live_mod
    from helmops.reconcile.manifest import ObjectRef

    async def objects(*_: Any) -> list[ObjectRef]:
        return [ObjectRef("v1", "Secret", "victim", "db")]

    async def get_json(api: Any, path: str) -> tuple[int, Any]:
        return 403, None

    async def discovery(api: Any, group: str, version: str) -> dict[str, Resource]:
        return {"Secret": Resource(group, version, "Secret", "secrets", True)}

    lr = LiveResources(mappings=RestMappings(fetch=discovery))
    monkeypatch.setattr(lr, "objects", objects)
    monkeypatch.setattr(live_mod, "get_json", get_json)
    (state,) = await lr.states("api", None, "c", "ns", "rel", 1)
    assert (state.state, state.message) == ("Unknown", "access denied (get secrets)")


# --- drift ---------------------------------------------------------------------------------------------------
def _Res(name: str, namespaced: bool = True, group: str = "") -> Resource:
    return Resource(group, "v1", "", name, namespaced)


async def test_drift_compares_only_objects_the_identity_may_get() -> None:
    mon = DriftMonitor(None, lambda k, d: None, period=0, delay=0)
    asked: list[tuple[Any, ...]] = []

    async def can_read(key: Any, group: str, resource: str, ns: str) -> bool:
        asked.append((key, group, resource, ns))
        return ns == "target"

    mon.can_read = can_read
    objs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "victim"}},
    ]
    m = _Manifest("k", "target", "rel", 1, "team.app", objs)
    kinds = {("v1", "ConfigMap"): _Res("configmaps"), ("v1", "Secret"): _Res("secrets")}
    kept = await mon._readable(KEY, m, kinds)
    assert [o["metadata"]["name"] for o in kept] == ["mine"]
    assert asked == [(KEY, "", "configmaps", "target"), (KEY, "", "secrets", "victim")]


# --- valuesFrom readers --------------------------------------------------------------------------------------
class _Inner:
    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        return {"values.yaml": "a: 1"}, "1"

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        return {"values.yaml": "a: 1"}, "1"


async def test_own_namespace_reader_refuses_other_namespaces() -> None:
    reader = OwnNamespaceReader(_Inner(), "team")
    assert (await reader.read_secret("team", "s"))[1] == "1"
    for call in (reader.read_secret, reader.read_configmap):
        with pytest.raises(ValuesError) as err:
            await call("victim", "db")
        assert "only from the HelmApp's namespace team" in err.value.message


async def test_confining_readers_may_reach_beyond_the_release_namespace() -> None:
    from helmops.values import ClusterContext, assemble

    helm = {"valuesFrom": [{"secretKeyRef": {"name": "s", "namespace": "team"}}]}
    ctx = ClusterContext.local(namespace="team")
    rv = await assemble(helm, ctx, release_namespace="target", reader=OwnNamespaceReader(_Inner(), "team"))
    assert rv.values == {"a": 1}
    with pytest.raises(ValuesError) as err:  # a plain reader (the controller's identity) is still refused
        await assemble(helm, ctx, release_namespace="target", reader=_Inner())  # type: ignore[arg-type]
    assert "cross-namespace" in err.value.message


def test_values_denial_names_the_service_account() -> None:
    from kubernetes.aio.client.exceptions import ApiException

    exc = ApiException(status=403, reason="Forbidden")
    msg = _problem("secret", "victim", "db", exc, "serviceAccount team/deployer").message
    assert msg == (
        "valuesFrom secret victim/db could not be read: access denied "
        "(serviceAccount team/deployer may not get secrets in namespace victim) (HTTP 403)"
    )


# --- the client cache ----------------------------------------------------------------------------------------
def _base() -> Any:
    cfg = kclient.Configuration(host="http://127.0.0.1:9")
    return kclient.ApiClient(configuration=cfg)


async def test_impersonating_clients_cache_bound_and_close() -> None:
    base = _base()
    cache = ImpersonatingClients(max_clients=2, close_grace=0.0)
    ctl = Identity("team", None)
    assert cache.api_for(base, "local", ctl) is base and len(cache) == 0
    a = cache.api_for(base, "local", Identity("team", "a"))
    assert a.default_headers[IMPERSONATE_USER] == service_account_user("team", "a") == "system:serviceaccount:team:a"
    assert a.configuration is base.configuration
    assert cache.api_for(base, "local", Identity("team", "a")) is a  # cached
    b = cache.api_for(base, "local", Identity("team", "b"))
    c = cache.api_for(base, "c1", Identity("team", "a"))  # another cluster: another client; evicts the oldest
    assert len(cache) == 2 and c is not a and b.default_headers[IMPERSONATE_USER].endswith(":b")
    closed: list[Any] = []
    for api in (a, b, c):
        orig = api.close

        async def close(api: Any = api, orig: Any = orig) -> None:
            closed.append(api)
            await orig()

        api.close = close
    await asyncio.sleep(0.05)  # grace 0: the evicted one is closed
    assert closed == [a]
    other_base = _base()
    c2 = cache.api_for(other_base, "c1", Identity("team", "a"))  # the cluster's connection was rebuilt
    assert c2 is not c
    await cache.close()
    assert set(map(id, closed)) >= {id(a), id(b), id(c)}
    await base.close()
    await other_base.close()
    await c2.close()
