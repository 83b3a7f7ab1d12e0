"""One parser of release records and manifests: drift and readiness (former copies) now agree."""

from __future__ import annotations

import base64
import json

from helmops.clusters import live
from helmops.drift import monitor
from helmops.reconcile import storage
from helmops.reconcile.manifest import CLUSTER_SCOPED, ObjectRef, manifest_objects, object_ref, object_refs

MANIFEST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: in-list}
- {not: an object}
---
apiVersion: v1
kind: ConfigMapList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: in-typed-list, namespace: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
---
# an empty document
---
apiVersion: v1
kind: Secret
metadata: {name: plain}
"""


def test_drift_and_readiness_use_the_one_decoder() -> None:
    assert monitor.decode_release is live.decode_release is storage.decode_release


def test_a_gzip_less_record_decodes_the_same_for_both() -> None:
    record = {"name": "web", "version": 2, "manifest": MANIFEST}
    plain = base64.b64encode(base64.b64encode(json.dumps(record).encode())).decode()  # Helm may store no gzip
    assert monitor.decode_release(plain) == live.decode_release(plain) == record
    assert storage.decode_release(storage.encode_release(record)) == record


def test_list_kinds_are_flattened_alike_for_drift_and_readiness() -> None:
    objects = manifest_objects(MANIFEST)  # what drift compares
    assert [o["metadata"]["name"] for o in objects] == ["in-list", "in-typed-list", "reader", "plain"]
    refs = object_refs(MANIFEST, "team")  # what readiness reads
    assert refs == [object_ref(o, "team", o["kind"] not in CLUSTER_SCOPED) for o in objects]
    assert refs[1] == ObjectRef("v1", "ConfigMap", "other", "in-typed-list")
    assert refs[2] == ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader")


def test_malformed_yaml_has_no_objects_for_either() -> None:
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n"
    assert manifest_objects(bad) == [] and object_refs(bad, "ns") == []


def test_discovery_decides_scope_and_duplicates_are_listed_once() -> None:
    thing = "apiVersion: x/v1\nkind: Thing\nmetadata: {name: a}\n"
    doubled = f"{thing}---\n{thing}"
    assert object_refs(doubled, "ns", lambda _a, _k: False) == [ObjectRef("x/v1", "Thing", "", "a")]
    assert object_refs(doubled, "ns") == [ObjectRef("x/v1", "Thing", "ns", "a")]
