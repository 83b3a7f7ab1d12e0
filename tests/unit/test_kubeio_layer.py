"""The Kubernetes access layer (helmops.kubeio): where clients are built, the REST mapping from discovery,
raw GETs, and the one HelmApp status writer. No network: fake clients and kubeconfig files only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.aio.client.exceptions import ApiException

from helmops.kubeio import client as kubeio_client
from helmops.kubeio import rest
from helmops.kubeio.client import (
    BoundedAioApiClient,
    BoundedSyncApiClient,
    KubeconfigUnusable,
    api_client,
    cli_aio_client,
    cli_client,
    context_namespace,
    impersonating_client,
)
from helmops.kubeio.kube import GROUP, MERGE_PATCH, PLURAL, VERSION, Conflict, Kube
from helmops.kubeio.latest import LatestHelmApps
from helmops.kubeio.mapping import (
    DiscoveryFailed,
    Resource,
    RestMapper,
    RestMappings,
    discover,
    parse_discovery,
    split_api_version,
)

HELMOPS = Path(__file__).resolve().parents[2] / "helmops"


# --- one module builds clients --------------------------------------------------------------------------
#: what builds a Kubernetes client or typed API, or loads client configuration.
_CONSTRUCTS = re.compile(
    r"ApiClient\(|Configuration\(|load_kube_config|load_incluster_config|new_client_from_config|"
    r"list_kube_config_contexts|DynamicClient|\w+V\d\w*Api\(|CustomObjectsApi\("
)


def test_only_kubeio_client_builds_kubernetes_clients() -> None:
    found = sorted(
        str(path.relative_to(HELMOPS.parent))
        for path in HELMOPS.rglob("*.py")
        if _CONSTRUCTS.search(path.read_text(encoding="utf-8"))
    )
    assert found == ["helmops/kubeio/client.py"]


def _kubeconfig(tmp_path: Path, namespace: str | None = "team") -> Path:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "main", "context": ctx}, {"name": "other", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "main",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def test_controller_client_from_a_kubeconfig_is_bounded(tmp_path: Path) -> None:
    api = await api_client(_kubeconfig(tmp_path))
    try:
        assert isinstance(api, BoundedAioApiClient)
        assert api.configuration.host == "https://127.0.0.1:6443"
        assert api.configuration.api_key["BearerToken"] == "Bearer t0ken"
    finally:
        await api.close()


async def test_cli_clients(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path))
    sync = cli_client(path, "other")
    try:
        assert isinstance(sync, BoundedSyncApiClient) and sync.configuration.host == "https://127.0.0.1:6443"
    finally:
        sync.close()
    aio = await cli_aio_client(path, None)
    try:
        assert isinstance(aio, BoundedAioApiClient)
    finally:
        await aio.close()
    with pytest.raises(KubeconfigUnusable):
        cli_client(str(tmp_path / "missing"), None)
    with pytest.raises(KubeconfigUnusable):
        await cli_aio_client(path, "no-such-context")


def test_context_namespace(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path))
    assert context_namespace(path, None) == "team"
    assert context_namespace(path, "other") is None
    assert context_namespace(path, "no-such-context") == "team"  # the current one


async def test_impersonating_client_shares_configuration_and_parses_bounded(tmp_path: Path) -> None:
    base = await api_client(_kubeconfig(tmp_path))
    api = impersonating_client(base, "Impersonate-User", "system:serviceaccount:team:a")
    try:
        assert isinstance(api, BoundedAioApiClient) and api.configuration is base.configuration
        assert api.default_headers["Impersonate-User"] == "system:serviceaccount:team:a"
        assert "Impersonate-User" not in base.default_headers
    finally:
        await api.close()
        await base.close()


async def test_typed_apis_use_the_given_client(tmp_path: Path) -> None:
    api = await api_client(_kubeconfig(tmp_path))
    try:
        for make in (
            kubeio_client.core_v1,
            kubeio_client.custom_objects,
            kubeio_client.coordination_v1,
            kubeio_client.authorization_v1,
        ):
            assert make(api).api_client is api
    finally:
        await api.close()


# --- raw GETs -------------------------------------------------------------------------------------------
class _Resp:
    def __init__(self, status: int, body: bytes, reason: str = "") -> None:
        self.status, self.body, self.reason = status, body, reason

    async def read(self) -> bytes:
        return self.body


class FakeApi:
    """param_serialize/call_api of a kubernetes.aio ApiClient, answering from ``routes`` (path → (status, doc))."""

    def __init__(self, routes: dict[str, tuple[int, Any]]) -> None:
        self.routes = routes
        self.gets: list[tuple[str, Any, Any]] = []

    async def param_serialize(self, method: str, path: str, **kw: Any) -> tuple[Any, ...]:
        assert method == "GET" and kw["auth_settings"] == ["BearerToken"]
        return method, (path, kw.get("query_params")), {"Accept": "application/json"}, None, None

    async def call_api(self, method: str, url: Any, header_params: Any = None, _request_timeout: Any = None) -> Any:
        path, query = url
        self.gets.append((path, query, _request_timeout))
        status, doc = self.routes.get(path, (404, None))
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return _Resp(status, body, "Forbidden" if status == 403 else "")


async def test_get_json_parses_bounded_and_hides_error_bodies() -> None:
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    api = FakeApi({"/api/v1/x": (200, deep), "/api/v1/y": (403, {"message": "secret details"})})
    status, doc = await rest.get_json(api, "/api/v1/x")
    assert status == 200 and isinstance(doc, dict)
    assert await rest.get_json(api, "/api/v1/y") == (403, None)
    assert api.gets[0] == ("/api/v1/x", None, rest.REQUEST_TIMEOUT)


async def test_list_raw_sends_the_selector_and_raises_on_errors() -> None:
    api = FakeApi({"/api/v1/configmaps": (200, {"items": []}), "/apis/x/v1/ys": (403, {})})
    assert json.loads(await rest.list_raw(api, "/api/v1/configmaps", "a=b")) == {"items": []}
    assert api.gets[0] == ("/api/v1/configmaps", [("labelSelector", "a=b")], None)
    with pytest.raises(rest.ListFailed) as err:
        await rest.list_raw(api, "/apis/x/v1/ys", "a=b")
    assert (err.value.status, err.value.reason) == (403, "Forbidden")


# --- the REST mapping -----------------------------------------------------------------------------------
CORE_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "kind": "Pod", "namespaced": True},
        {"name": "pods/log", "kind": "Pod", "namespaced": True},
        {"name": "endpoints", "kind": "Endpoints", "namespaced": True},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False},
        {"name": "", "kind": "Broken"},
        "junk",
    ],
}
NETWORKING = {
    "groupVersion": "networking.k8s.io/v1",
    "resources": [
        {"name": "ingresses", "kind": "Ingress", "namespaced": True},
        {"name": "ingresses/status", "kind": "Ingress", "namespaced": True},
        {"name": "ingressclasses", "kind": "IngressClass", "namespaced": False},
    ],
}


def test_parse_discovery_skips_subresources_and_junk() -> None:
    kinds = parse_discovery("", "v1", CORE_V1)
    assert kinds == {
        "Pod": Resource("", "v1", "Pod", "pods", True),
        "Endpoints": Resource("", "v1", "Endpoints", "endpoints", True),
        "Namespace": Resource("", "v1", "Namespace", "namespaces", False),
    }
    assert parse_discovery("", "v1", ["not", "a", "document"]) == {}


def test_resource_paths() -> None:
    ing = parse_discovery("networking.k8s.io", "v1", NETWORKING)
    assert ing["Ingress"].path("web", "front") == "/apis/networking.k8s.io/v1/namespaces/web/ingresses/front"
    assert ing["Ingress"].path() == "/apis/networking.k8s.io/v1/ingresses"
    # a cluster-scoped kind ignores a namespace a manifest gave it
    assert ing["IngressClass"].path("web", "nginx") == "/apis/networking.k8s.io/v1/ingressclasses/nginx"
    assert ing["IngressClass"].api_version == "networking.k8s.io/v1"
    assert Resource("", "v1", "Pod", "pods", True).api_version == "v1"


def test_split_api_version_refuses_what_is_no_api_version() -> None:
    assert split_api_version("v1") == ("", "v1")
    assert split_api_version("apps/v1") == ("apps", "v1")
    assert split_api_version("example.com/v1beta1") == ("example.com", "v1beta1")
    for bad in ("", "../v1", "a/b/v1", "Apps/v1", "apps/", "apps/v 1", "apps/v1?x=y"):
        assert split_api_version(bad) is None, bad


async def test_discover_reads_one_document_per_group_version() -> None:
    api = FakeApi({"/api/v1": (200, CORE_V1), "/apis/networking.k8s.io/v1": (200, NETWORKING), "/apis/x/v1": (403, {})})
    assert set(await discover(api, "", "v1")) == {"Pod", "Endpoints", "Namespace"}
    assert set(await discover(api, "networking.k8s.io", "v1")) == {"Ingress", "IngressClass"}
    assert await discover(api, "gone.example.com", "v1") == {}  # 404: not served
    with pytest.raises(DiscoveryFailed) as err:
        await discover(api, "x", "v1")
    assert err.value.status == 403 and err.value.api_version == "x/v1"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_mapper_caches_per_group_version_and_refreshes_on_unknown_kinds() -> None:
    served: dict[tuple[str, str], dict[str, Resource]] = {("", "v1"): parse_discovery("", "v1", CORE_V1)}
    fetched: list[tuple[Any, str, str]] = []

    async def fetch(api: Any, group: str, version: str) -> dict[str, Resource]:
        fetched.append((api, group, version))
        return dict(served.get((group, version), {}))

    clock = _Clock()
    mapper = RestMapper(refresh_after=30.0, clock=clock, fetch=fetch)
    pod = await mapper.resource("a", "v1", "Pod")
    assert pod is not None and (pod.plural, pod.namespaced) == ("pods", True)
    ns = await mapper.resource("b", "v1", "Namespace")  # cached: any client of the cluster
    assert ns is not None and not ns.namespaced
    assert fetched == [("a", "", "v1")]
    # a kind the document lacks: fetched again only once the refresh period passed
    assert await mapper.resource("a", "example.com/v1", "Widget") is None
    assert await mapper.resource("a", "example.com/v1", "Widget") is None
    assert len(fetched) == 2
    served[("example.com", "v1")] = {"Widget": Resource("example.com", "v1", "Widget", "widgets", True)}
    clock.now += 29
    assert await mapper.resource("a", "example.com/v1", "Widget") is None
    clock.now += 2
    widget = await mapper.resource("a", "example.com/v1", "Widget")
    assert widget is not None and widget.plural == "widgets" and len(fetched) == 3
    assert await mapper.resource("a", "example.com/v1", "Widget") == widget and len(fetched) == 3
    # not an apiVersion: never fetched
    assert await mapper.resource("a", "../../v1", "Secret") is None and len(fetched) == 3
    mapper.forget()
    assert await mapper.resource("a", "v1", "Pod") == pod and len(fetched) == 4


async def test_mapper_raises_when_discovery_fails_and_caches_nothing() -> None:
    calls: list[str] = []

    async def fetch(api: Any, group: str, version: str) -> dict[str, Resource]:
        calls.append(version)
        raise DiscoveryFailed(version, 503)

    mapper = RestMapper(fetch=fetch)
    for _ in range(2):
        with pytest.raises(DiscoveryFailed):
            await mapper.resource(None, "v1", "Pod")
    assert calls == ["v1", "v1"]


async def test_mapper_memory_is_bounded_whatever_a_release_names() -> None:
    """A tenant-written release record may name any number of apiVersions: the mapper keeps the most recently
    used group-versions only."""
    fetched: list[str] = []

    async def fetch(api: Any, group: str, version: str) -> dict[str, Resource]:
        fetched.append(group)
        return {}

    mapper = RestMapper(fetch=fetch, max_group_versions=3)
    await mapper.resource(None, "v1", "Pod")
    for i in range(100):
        await mapper.resource(None, f"g{i}.evil.example/v1", "Thing")
        await mapper.resource(None, "v1", "Pod")  # still used: kept
    assert len(mapper._known) == 3
    assert fetched.count("") == 1  # the core group was never evicted


def test_mappings_are_per_cluster_and_bounded() -> None:
    maps = RestMappings(max_clusters=2)
    a = maps.of("a")
    assert maps.of("a") is a and maps.of("b") is not a
    maps.of("c")  # evicts a
    assert maps.of("a") is not a
    b = maps.of("b")
    maps.forget("b")
    assert maps.of("b") is not b


# --- the one HelmApp status writer ----------------------------------------------------------------------
class _Custom:
    def __init__(self, fail: int | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def patch_namespaced_custom_object_status(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append((args, kw))
        if self.fail is not None:
            raise ApiException(status=self.fail, reason="nope")
        return {"status": dict(args[5]["status"])}


def _kube(custom: _Custom) -> Kube:
    kube = Kube.__new__(Kube)  # no ApiClient: only the CustomObjectsApi is faked
    kube.custom = custom
    kube.latest = LatestHelmApps()
    return kube


async def test_patch_status_is_a_merge_patch_of_the_status_subresource() -> None:
    custom = _Custom()
    out = await _kube(custom).patch_status("ns", "app", {"status": {"a": 1}})
    assert out == {"status": {"a": 1}}
    ((args, kw),) = custom.calls
    assert args == (GROUP, VERSION, "ns", PLURAL, "app", {"status": {"a": 1}})
    assert kw == {"_content_type": MERGE_PATCH}
    assert (GROUP, VERSION, PLURAL) == ("fleet.cattle.io", "v1alpha1", "helmapps")


async def test_patch_status_guarded_by_resource_version() -> None:
    custom = _Custom()
    patch = {"status": {"conditions": []}}
    await _kube(custom).patch_status("ns", "app", patch, resource_version="7")
    assert custom.calls[0][0][5] == {"status": {"conditions": []}, "metadata": {"resourceVersion": "7"}}
    assert patch == {"status": {"conditions": []}}  # the caller's patch is not changed


async def test_patch_status_errors() -> None:
    assert await _kube(_Custom(404)).patch_status("ns", "gone", {"status": {}}) is None
    with pytest.raises(Conflict):
        await _kube(_Custom(409)).patch_status("ns", "app", {"status": {}}, resource_version="1")
    with pytest.raises(ApiException) as err:
        await _kube(_Custom(500)).patch_status("ns", "app", {"status": {}})
    assert err.value.status == 500


# --- the newest HelmApp copies (helmops.kubeio.latest) -----------------------------------------------------
def _app(rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "app", "resourceVersion": rv}, **extra}


def test_latest_holds_only_watched_helmapps() -> None:
    latest = LatestHelmApps()
    latest.refresh(_app("3"))  # a GET or write answer alone holds nothing
    assert latest.get(("ns", "app")) is None
    latest.offer(_app("3"))
    latest.refresh(_app("4", spec={"v": 4}))
    assert (latest.get(("ns", "app")) or {})["spec"] == {"v": 4}


def test_latest_keeps_the_newest_copy() -> None:
    latest = LatestHelmApps()
    latest.offer(_app("10", spec={"v": 1}))
    latest.offer(_app("9", spec={"v": 0}))  # a late watch event of an older version
    assert latest.get(("ns", "app")) == _app("10", spec={"v": 1})
    latest.offer(_app("11", spec={"v": 2}))
    held = latest.get(("ns", "app"))
    assert held is not None and held["spec"] == {"v": 2}
    held["spec"] = {"v": 99}  # a caller's top-level change stays its own
    assert latest.get(("ns", "app")) == _app("11", spec={"v": 2})
    latest.offer(_app("not-a-number"))  # opaque versions: taken as newer, as a watch event would be
    assert latest.get(("ns", "app")) == _app("not-a-number")
    latest.offer({"metadata": {"name": "no-namespace"}})
    assert len(latest) == 1
    latest.forget(("ns", "app"))
    assert latest.get(("ns", "app")) is None and len(latest) == 0


class _Reads(_Custom):
    def __init__(self, fail: int | None = None) -> None:
        super().__init__(fail)
        self.gets = 0

    async def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.gets += 1
        return _app("5", spec={"from": "server"})


async def test_get_helmapp_reads_the_watched_copy_and_a_conflict_drops_it() -> None:
    custom = _Reads()
    kube = _kube(custom)
    # not watched (yet): every read asks the server, and the answer is not held
    assert (await kube.get_helmapp("ns", "app") or {})["spec"] == {"from": "server"}
    assert (await kube.get_helmapp("ns", "app") or {})["spec"] == {"from": "server"}
    assert custom.gets == 2 and kube.latest.get(("ns", "app")) is None
    kube.latest.offer(_app("4", spec={"from": "watch"}))  # a watch event
    assert (await kube.get_helmapp("ns", "app") or {})["spec"] == {"from": "watch"}
    assert custom.gets == 2
    assert (await kube.get_helmapp("ns", "app", fresh=True) or {})["spec"] == {"from": "server"}
    assert custom.gets == 3
    assert (await kube.get_helmapp("ns", "app") or {})["spec"] == {"from": "server"}  # rv 5 replaced rv 4
    custom.fail = 409  # a write refused for a stale resourceVersion: the retry must read the server
    with pytest.raises(Conflict):
        await kube.patch_status("ns", "app", {"status": {}}, resource_version="5")
    assert kube.latest.get(("ns", "app")) is None


def test_proxy_variables_keep_aiohttp_trusting_the_environment() -> None:
    from helmops.kubeio.client import proxies_configured

    assert not proxies_configured({})
    assert not proxies_configured({"HOME": "/root", "HTTPS_PROXY": ""})
    assert proxies_configured({"HTTPS_PROXY": "http://proxy:3128"})
    assert proxies_configured({"no_proxy": "10.0.0.0/8"})
