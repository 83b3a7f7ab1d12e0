"""The bounded JSON loader, the kopf patch and the bounded ApiClients (helmops.kubeio), and the raw-object
limits the spec checks put on what the loader lets through (helmops.api.validate)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from helmops.api.validate import (
    ANNOTATIONS_MAX_BYTES,
    MAX_NESTING,
    cluster_problems,
    helmapp_problems,
    nesting_problem,
)
from helmops.kubeio import kopfpatch
from helmops.kubeio.bounded import MAX_DEPTH, TRUNCATED, cut, loads
from helmops.kubeio.client import BoundedAioApiClient, BoundedSyncApiClient, aio_client, sync_client


def _depth(doc: Any) -> int:
    """Levels of containers, iteratively (the test must not recurse either)."""
    best, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            best = max(best, d)
            stack.extend((c, d + 1) for c in (node.values() if isinstance(node, dict) else node))
    return best


def _nested_maps(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def _helmapp_json(values_json: str) -> str:
    return (
        '{"type":"ADDED","object":{"apiVersion":"fleet.cattle.io/v1alpha1","kind":"HelmApp",'
        '"metadata":{"name":"deep","namespace":"t1"},"spec":{"helm":{"chart":"c","values":' + values_json + "}}}}"
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2.5, "x", null, true, false, {}, []], "b": {"c": "\\u00e9"}}',
        "[]",
        '"just a string"',
        "42",
        '{"k": -1e3, "big": 12345678901234567890}',
    ],
)
def test_ordinary_json_is_parsed_exactly_as_json_loads(text: str) -> None:
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 900, 5_000, 9_999, 100_000])
@pytest.mark.parametrize("kind", ["maps", "lists"])
def test_any_depth_is_cut_to_the_cap_without_recursion_error(levels: int, kind: str) -> None:
    text = _nested_maps(levels) if kind == "maps" else "[" * levels + "]" * levels
    doc = loads(text)
    assert _depth(doc) == min(levels, MAX_DEPTH)
    serialised = json.dumps(doc)  # the result is an ordinary, shallow document
    assert (TRUNCATED in serialised) == (levels > MAX_DEPTH)


def test_fast_and_slow_paths_agree() -> None:
    text = _helmapp_json(_nested_maps(600))  # the C decoder takes this; cut() shortens it
    fast = loads(text)
    slow = loads(_helmapp_json(_nested_maps(20_000)))  # this one needs the ijson path
    assert fast == slow


def test_deep_values_in_a_watch_event_keep_the_object_readable() -> None:
    event = loads(_helmapp_json("[" * 9_000 + "]" * 9_000))
    obj = event["object"]
    assert event["type"] == "ADDED" and obj["metadata"] == {"name": "deep", "namespace": "t1"}
    assert obj["spec"]["helm"]["chart"] == "c"
    problem = nesting_problem(obj["spec"], "spec")
    assert problem is not None and str(problem).startswith("spec.helm.values: nested deeper than")


@pytest.mark.parametrize("text", ["{", '{"a":', "[" * 5000, '{"a": 1} trailing', "", "[1,]"])
def test_invalid_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_cut_works_in_place_and_leaves_scalars_alone() -> None:
    assert cut(5) == 5
    doc: dict[str, Any] = {"a": {"b": {"c": [1]}}}
    assert cut(doc, 2) == {"a": {"b": TRUNCATED}}


def test_recursion_limit_is_not_raised_to_parse() -> None:
    before = sys.getrecursionlimit()
    loads(_nested_maps(50_000))
    assert sys.getrecursionlimit() == before


# --- spec limits -------------------------------------------------------------------------------------------
def _nested(levels: int) -> Any:
    v: Any = "leaf"
    for _ in range(levels):
        v = {"k": v}
    return v


def test_nesting_limit_counts_from_the_field() -> None:
    # spec (1) > helm (2) > values (3): values may hold MAX_NESTING - 3 more levels
    ok = {"helm": {"values": _nested(MAX_NESTING - 2)}}
    assert nesting_problem(ok, "spec") is None
    bad = {"helm": {"values": _nested(MAX_NESTING - 1)}}
    problem = nesting_problem(bad, "spec")
    assert problem is not None and problem.path == "spec.helm.values"


def test_nesting_check_names_the_target() -> None:
    spec = {"targets": [{"clusterName": "a"}, {"helm": {"values": _nested(200)}}]}
    problem = nesting_problem(spec, "spec")
    assert problem is not None and problem.path == "spec.targets[1]"


def test_a_subtree_cut_by_the_loader_is_always_too_deep() -> None:
    assert nesting_problem({"x": TRUNCATED}, "spec", limit=1000) is not None


def test_helmapp_problems_depth_and_annotation_room() -> None:
    deep = {"metadata": {"name": "x"}, "spec": {"helm": {"values": _nested(100)}}}
    assert [p.path for p in helmapp_problems(deep)] == ["spec.helm.values"]
    crowded = {"metadata": {"annotations": {"big": "x" * (ANNOTATIONS_MAX_BYTES - 1000)}}, "spec": {}}
    assert [p.path for p in helmapp_problems(crowded)] == ["metadata.annotations"]
    fine = {"metadata": {"annotations": {"a": "b"}}, "spec": {"helm": {"values": {"a": [1, {"b": 2}]}}}}
    assert helmapp_problems(fine) == []


def test_cluster_problems_on_template_values() -> None:
    cluster = {"metadata": {"name": "c", "labels": {"env": "dev"}}, "spec": {"templateValues": _nested(80)}}
    problems = cluster_problems(cluster)
    assert len(problems) == 1 and problems[0].path.startswith("spec.templateValues")
    assert cluster_problems({"metadata": {"name": "c"}, "spec": {"templateValues": {"a": "b"}}}) == []


def test_spec_checker_reports_depth_before_pydantic_sees_the_spec() -> None:
    from helmops.desired.adapters import spec_checker

    obj = {"metadata": {"name": "d", "namespace": "t"}, "spec": {"helm": {"chart": "c", "values": _nested(5000)}}}
    problems = spec_checker().problems(obj)
    assert problems and "nested deeper than" in problems[0]


# --- kopf -------------------------------------------------------------------------------------------------
def test_kopf_patch_is_applied_and_idempotent() -> None:
    from kopf._cogs.clients import api

    kopfpatch.apply()
    kopfpatch.apply()
    assert kopfpatch.is_applied()
    api_any: Any = api
    assert _depth(api_any.json.loads(_nested_maps(20_000))) == MAX_DEPTH


def test_kopf_request_helpers_parse_with_the_bounded_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from kopf._cogs.clients import api

    kopfpatch.apply()
    body = _nested_maps(20_000).encode()

    class Response:
        async def __aenter__(self) -> Response:
            return self

        async def __aexit__(self, *_: Any) -> None:
            return None

        async def read(self) -> bytes:
            return body

    seen: dict[str, Any] = {}

    async def request(**kwargs: Any) -> Response:
        seen.update(kwargs)
        return Response()

    # the patched helpers look kopf's request up at patch time: re-wrap with a stand-in for this test
    helper = kopfpatch._helper("get", request)
    doc = asyncio.run(helper("/apis/x", settings=None, logger=None))
    assert _depth(doc) == MAX_DEPTH and seen["method"] == "get" and seen["url"] == "/apis/x"
    api_any: Any = api
    assert getattr(api_any.get, "__helmops_bounded_json__", False)


# --- kubernetes clients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [sync_client, aio_client])
def test_api_clients_parse_deep_responses(factory: Any) -> None:
    from kubernetes import client as sync
    from kubernetes.aio import client as aio

    async def build() -> Any:
        return factory(aio.Configuration())

    api = asyncio.run(build()) if factory is aio_client else factory(sync.Configuration())
    assert isinstance(api, BoundedAioApiClient | BoundedSyncApiClient)
    text = _helmapp_json("[" * 9_000 + "]" * 9_000)
    doc = api.deserialize(text, "object", "application/json")
    assert doc["object"]["metadata"]["name"] == "deep" and _depth(doc) == MAX_DEPTH
    # typed responses still map to models
    ns = api.deserialize('{"metadata": {"name": "n1"}}', "V1Namespace", "application/json; charset=utf-8")
    assert ns.metadata.name == "n1"
    assert api.deserialize("plain", "str", "text/plain") == "plain"
    if factory is aio_client:
        asyncio.run(api.close())


def test_deployed_clusters_annotation_of_any_depth_counts_as_none() -> None:
    from helmops.clusters.resolve import DEPLOYED_ANNOTATION, deployed_clusters

    deep = "[" * 50_000 + "]" * 50_000  # a tenant may write any annotation value
    obj = {"metadata": {"annotations": {DEPLOYED_ANNOTATION: deep}}}
    assert deployed_clusters(obj) == []
    obj = {"metadata": {"annotations": {DEPLOYED_ANNOTATION: '["local","c1"]'}}}
    assert deployed_clusters(obj) == ["c1", "local"]


def test_kopf_patch_refuses_a_kopf_whose_api_module_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import kopf._cogs.clients as clients

    fake = types.ModuleType("kopf._cogs.clients.api")
    fake.json = types.SimpleNamespace(loads=json.loads)  # type: ignore[attr-defined]  # not the json module
    monkeypatch.setattr(clients, "api", fake)
    with pytest.raises(RuntimeError, match="changed shape"):
        kopfpatch.apply()


@pytest.mark.parametrize("module", ["helmops.clusters.live", "helmops.drift.monitor"])  # readiness, drift
def test_release_records_with_deep_chart_values_decode(module: str) -> None:
    """A tenant's chart may ship values.yaml nested thousands of levels deep; helm stores them in the release."""
    import base64
    import gzip
    import importlib

    release = '{"name":"r","manifest":"---\\n","chart":{"values":{"deep":' + "[" * 9_000 + "]" * 9_000 + "}}}"
    stored = base64.b64encode(base64.b64encode(gzip.compress(release.encode()))).decode()
    decoded = importlib.import_module(module).decode_release(stored)
    assert decoded["name"] == "r" and decoded["manifest"] == "---\n"


def test_deep_rendered_manifests_do_not_break_readiness_or_drift() -> None:
    from helmops.reconcile.manifest import manifest_objects, object_refs

    manifest = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n"
        "apiVersion: example.com/v1\nkind: Deep\nmetadata: {name: deep}\nspec: " + "[" * 5_000 + "]" * 5_000 + "\n"
    )
    assert object_refs(manifest, "ns") == []  # readiness: unparseable, nothing to wait for, no exception
    assert manifest_objects(manifest) == []  # drift
