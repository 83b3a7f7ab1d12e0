"""Drift: release decoding, field comparison (only what the chart set), comparePatches."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.api.spec import HelmAppSpec
from helmops.drift.compare import (
    Modified,
    compare_object,
    compare_release,
    differences,
    ignored_pointers,
    remove_pointer,
)
from helmops.drift.monitor import (
    release_namespaces,
)
from helmops.kubeio.mapping import Resource, RestMapper
from helmops.reconcile.manifest import ObjectRef, manifest_objects
from helmops.reconcile.storage import decode_release

CM = ObjectRef("v1", "ConfigMap", "ns", "web")


def desired_cm(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "data": dict(data),
    }


def live_cm(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "123",
            "resourceVersion": "9",
            "labels": {"app": "web", "app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "web"},
            "managedFields": [{"manager": "helm"}],
        },
        "data": dict(data),
    }


def test_decode_release_secret_value() -> None:
    record = {"name": "web", "version": 3, "manifest": "---\n# Source: x\napiVersion: v1\nkind: ConfigMap\n"}
    helm_value = base64.b64encode(gzip.compress(json.dumps(record).encode()))
    api_value = base64.b64encode(helm_value).decode()
    assert decode_release(api_value) == record
    plain = base64.b64encode(base64.b64encode(json.dumps(record).encode())).decode()
    assert decode_release(plain) == record


def test_manifest_objects() -> None:
    text = (
        "---\n# Source: a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        "---\n# empty\n"
        "---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s\n"
    )
    assert [(o["kind"], o["metadata"]["name"]) for o in manifest_objects(text)] == [("ConfigMap", "a"), ("Secret", "s")]


def test_server_defaults_and_bookkeeping_are_not_drift() -> None:
    assert compare_object(CM, desired_cm(message="hi"), live_cm(message="hi")) is None
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
    }
    live = json.loads(json.dumps(deploy))
    live["spec"]["revisionHistoryLimit"] = 10  # server default
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"  # server default
    live["status"] = {"readyReplicas": 0}
    ref = ObjectRef("apps/v1", "Deployment", "ns", "d")
    assert compare_object(ref, deploy, live) is None


def test_changed_added_and_removed_values() -> None:
    m = compare_object(CM, desired_cm(message="hi", other="x"), live_cm(message="edited"))
    assert m == Modified(CM, paths=("/data/message", "/data/other"))
    assert m.describe() == "configmap.v1 ns/web modified /data/message, /data/other"
    assert compare_object(CM, desired_cm(message="hi"), None) == Modified(CM, missing=True)
    assert Modified(CM, missing=True).describe() == "configmap.v1 ns/web missing"
    # a label the chart set was removed
    live = live_cm(message="hi")
    del live["metadata"]["labels"]["app"]
    assert compare_object(CM, desired_cm(message="hi"), live) == Modified(CM, paths=("/metadata/labels/app",))


def test_lists_compare_by_position_and_length() -> None:
    assert differences({"a": [1, 2]}, {"a": [1, 2]}) == []
    assert differences({"a": [1, 2]}, {"a": [1, 3]}) == ["/a/1"]
    assert differences({"a": [1, 2]}, {"a": [1]}) == ["/a"]
    assert differences({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 2}]}) == []


def test_scalar_normalisation_and_empty_values() -> None:
    assert differences({"port": 80}, {"port": "80"}) == []
    assert differences({"flag": True}, {"flag": "true"}) == ["/flag"]
    assert differences({"data": {}}, {}) == []  # an empty map the server drops is not drift
    assert differences({"k/x": 1}, {"k/x": 2}) == ["/k~1x"]


def test_compare_patches_select_objects_and_hide_fields() -> None:
    patches = [
        {"kind": "ConfigMap", "name": "web", "operations": [{"op": "remove", "path": "/data/message"}]},
        {"kind": "ConfigMap", "apiVersion": "v1", "jsonPointers": ["/data/replicas"]},
        {"kind": "Secret", "jsonPointers": ["/data"]},
        {"kind": "ConfigMap", "name": "other", "jsonPointers": ["/data/other"]},
    ]
    assert ignored_pointers(CM, patches) == ["/data/message", "/data/replicas"]
    desired, live = desired_cm(message="a", replicas="1", other="x"), live_cm(message="b", replicas="5", other="y")
    assert compare_object(CM, desired, live, patches) == Modified(CM, paths=("/data/other",))
    ignore_op = [{"kind": "ConfigMap", "operations": [{"op": "ignore", "path": "/data/other"}]}]
    assert compare_object(CM, desired_cm(other="x"), live_cm(other="y"), ignore_op) is None


def test_remove_pointer() -> None:
    obj: dict[str, Any] = {"a": {"b/c": 1, "d": [1, 2, 3]}}
    remove_pointer(obj, "/a/b~1c")
    remove_pointer(obj, "/a/d/1")
    remove_pointer(obj, "/nope/x")
    remove_pointer(obj, "no-slash")
    assert obj == {"a": {"d": [1, 3]}}


def test_compare_release_namespaces_and_unknown_kinds() -> None:
    objects = [
        desired_cm(message="hi"),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"x": 1}},
    ]
    live = {CM: live_cm(message="changed")}

    def scoped(api_version: str, kind: str) -> bool | None:
        return {"ConfigMap": True, "ClusterRole": False}.get(kind)

    found = compare_release(objects, live, "ns", None, scoped)
    cluster_role = ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "", "r")
    assert found == [Modified(cluster_role, missing=True), Modified(CM, paths=("/data/message",))]
    assert found[0].describe() == "clusterrole.rbac.authorization.k8s.io.v1 r missing"
    assert found[1].status_entry()["patch"] == '{"changed":["/data/message"]}'


# --- the monitor, with the API faked at its two edges --------------------------------------------------
class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _release_secret(ns: str, release: str, owner: str, revision: int, manifest: str) -> Any:
    record = {"name": release, "version": revision, "manifest": manifest}
    value = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(record).encode()))).decode()
    labels = {
        "owner": "helm",
        "name": release,
        "status": "deployed",
        "version": str(revision),
        "helmops.cattle.io/helmapp": owner,
    }
    meta = _Obj(
        namespace=ns, name=f"sh.helm.release.v1.{release}.v{revision}", labels=labels, resource_version=str(revision)
    )
    return _Obj(metadata=meta, data={"release": value})


class FakeMonitor:
    """DriftMonitor with a fake core API, discovery and list GET; counts API calls."""

    def __new__(cls, secrets: list[Any], live: dict[str, list[dict[str, Any]]]) -> Any:
        from helmops.drift.monitor import (
            DriftMonitor,
        )

        calls: list[str] = []
        enqueued: list[tuple[Any, float]] = []

        class Core:
            async def list_secret_for_all_namespaces(self, label_selector: str) -> Any:
                calls.append(f"secrets {label_selector}")
                return _Obj(items=secrets)

        async def discovery(api: Any, group: str, version: str) -> dict[str, Resource]:
            served = ("ConfigMap", "ClusterRole") if group == "" else ()  # example.com's Widget: not served
            return {k: Resource(group, version, k, k.lower() + "s", k != "ClusterRole") for k in served}

        class M(DriftMonitor):
            def _core(self) -> Any:
                return Core()

            async def _list_raw(self, res: Resource, label_selector: str) -> bytes:
                calls.append(f"list {res.kind} {label_selector}")
                return json.dumps({"items": live.get(res.kind, [])}).encode()  # parsed by the bounded loader

        m = M(None, lambda key, delay: enqueued.append((key, delay)), period=60, delay=0.01)
        m.mapper = RestMapper(fetch=discovery)
        m.calls, m.enqueued = calls, enqueued
        return m


def _helmapp(name: str, **spec: Any) -> HelmApp:
    return parse_helmapp({"metadata": {"namespace": "apps", "name": name}, "spec": {"defaultNamespace": "t", **spec}})


def test_monitor_check_costs_one_list_per_kind_and_enqueues_once() -> None:
    import asyncio

    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\ndata:\n  message: hi\n"
    n = 50
    secrets = [_release_secret("t", f"r{i}", f"apps.h{i}", 1, manifest.format(n=f"cm{i}")) for i in range(n)]
    live = {"ConfigMap": [live_cm(message="hi") | {"metadata": {"name": f"cm{i}", "namespace": "t"}} for i in range(n)]}
    live["ConfigMap"][7]["data"] = {"message": "edited"}

    async def go() -> None:
        m = FakeMonitor(secrets, live)
        for i in range(n):
            m.update(_helmapp(f"h{i}", correctDrift={"enabled": i == 7}))
        found = await m.check()
        assert m.calls == [
            "secrets owner=helm,status=deployed,helmops.cattle.io/managed-by=helmops",
            "list ConfigMap app.kubernetes.io/managed-by=Helm",
        ]  # 2 API calls for 50 HelmApps
        drifted = {k: v for k, v in found.items() if v}
        assert list(drifted) == [("apps", "h7")]
        assert drifted[("apps", "h7")][0].describe() == "configmap.v1 t/cm7 modified /data/message"
        assert m.modified(("apps", "h7")) and not m.modified(("apps", "h8"))
        await m.check()  # the same drift again within the delay: still one enqueue
        await asyncio.sleep(0.05)
        assert m.enqueued == [(("apps", "h7"), 0.0)]
        m.cleared(("apps", "h7"))
        assert m.modified(("apps", "h7")) == ()
        # paused: not checked, and its drift is cleared
        m.update(_helmapp("h7", paused=True))
        await m.check()
        assert m.modified(("apps", "h7")) == ()
        await m.stop()

    asyncio.run(go())


def test_monitor_ignores_untracked_releases_and_unknown_kinds() -> None:
    import asyncio

    manifest = (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gone\ndata:\n  a: b\n"
    )
    secrets = [
        _release_secret("t", "mine", "apps.mine", 2, manifest),
        _release_secret("t", "other", "elsewhere.x", 1, manifest),
    ]

    async def go() -> None:
        m = FakeMonitor(secrets, {})
        m.update(_helmapp("mine"))
        found = await m.check()
        assert list(found) == [("apps", "mine")]
        assert [x.describe() for x in found[("apps", "mine")]] == ["configmap.v1 t/gone missing"]
        assert m.resources(("apps", "mine")) == 2
        await m.stop()

    asyncio.run(go())


def test_encode_release_round_trips() -> None:
    from helmops.reconcile.storage import encode_release

    record = {"name": "web", "version": 4, "info": {"status": "deployed"}, "manifest": "a: b\n"}
    assert decode_release(encode_release(record)) == record


def test_monitor_ignores_a_release_planted_outside_the_helmapps_namespaces() -> None:
    """The owner label is tenant-writable: a release Secret claiming HelmApp h0 in a namespace h0 never deploys
    to (another tenant's) is neither compared nor reported as h0's drift."""
    import asyncio

    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  message: hi\n"
    secrets = [_release_secret("tenant-b", "planted", "apps.h0", 9, manifest)]
    live = {"ConfigMap": [live_cm(message="edited") | {"metadata": {"name": "cm", "namespace": "tenant-b"}}]}

    async def go() -> None:
        m = FakeMonitor(secrets, live)
        m.update(_helmapp("h0", correctDrift={"enabled": True}))
        found = await m.check()
        assert not any(found.values()) and not m.modified(("apps", "h0"))
        # (a target that is not a map cannot reach the monitor: the HelmApp is parsed where it enters)
        spec = HelmAppSpec.model_validate({"namespace": "a", "targets": [{"namespace": "b"}, {}]})
        assert release_namespaces(spec) == {"a", "b"}
        assert release_namespaces(HelmAppSpec()) == {"default"}

    asyncio.run(go())


def test_monitor_lists_live_objects_through_the_bounded_loader() -> None:
    """A tenant's object nested past what the dynamic client can parse still leaves the kind comparable for
    everyone: the list is parsed bounded, and the other objects are compared as usual."""
    import asyncio

    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm0\ndata:\n  message: hi\n"
    secrets = [_release_secret("t", "r0", "apps.h0", 1, manifest)]
    edited = live_cm(message="edited") | {"metadata": {"name": "cm0", "namespace": "t"}}
    body = json.dumps({"items": [edited, {"metadata": {"name": "deep", "namespace": "x"}, "data": "@@"}]})
    body = body.replace('"@@"', '{"a":' * 5000 + "1" + "}" * 5000)

    async def go() -> None:
        m = FakeMonitor(secrets, {})

        async def list_raw(res: Resource, label_selector: str) -> bytes:
            return body.encode()

        m._list_raw = list_raw
        m.update(_helmapp("h0"))
        found = await m.check()
        assert [d.describe() for d in found[("apps", "h0")]] == ["configmap.v1 t/cm0 modified /data/message"]

    asyncio.run(go())
