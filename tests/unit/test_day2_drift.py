"""Drift: release decoding, field comparison (only what the chart set), comparePatches."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from helmops.controller.drift import (
    Modified,
    ObjectRef,
    compare_object,
    compare_release,
    decode_release,
    differences,
    ignored_pointers,
    manifest_objects,
    remove_pointer,
)

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
