"""Assembly order, errors, determinism and provenance, with a fake `valuesFrom` reader (the real one is
exercised against a real API server in tests/integration/test_values_from.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from helmops.values import ClusterContext, ValuesError, assemble, render_inline

CTX = ClusterContext.from_cluster(
    {
        "metadata": {
            "name": "c1",
            "namespace": "fleet-default",
            "labels": {"env": "prod", "region": "eu", "foo.cattle.io/hidden": "x"},
        },
        "spec": {"templateValues": {"replicas": 3, "zones": ["a", "b"]}},
    }
)


class FakeReader:
    def __init__(
        self, configmaps: dict[tuple[str, str], dict[str, str]], secrets: dict[tuple[str, str], dict[str, str]]
    ):
        self.configmaps = configmaps
        self.secrets = secrets
        self.calls: list[tuple[str, str, str]] = []

    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        self.calls.append(("configmap", namespace, name))
        if (namespace, name) not in self.configmaps:
            raise ValuesError(f"valuesFrom configmap {namespace}/{name} not found", retryable=True)
        return self.configmaps[(namespace, name)], "100"

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        self.calls.append(("secret", namespace, name))
        if (namespace, name) not in self.secrets:
            raise ValuesError(f"valuesFrom secret {namespace}/{name} not found", retryable=True)
        return self.secrets[(namespace, name)], "200"


def test_values_are_one_template_and_numbers_come_back_typed() -> None:
    helm = {
        "values": {
            "replicas": "${ .ClusterValues.replicas }",
            "name": "${ .ClusterName }-${ .ClusterLabels.env }",
            "zones": "${ toJson .ClusterValues.zones }",
            "enabled": '${ eq .ClusterLabels.env "prod" }',
            "script": "#!/bin/sh\necho ${ .ClusterName | quote }\n",
        }
    }
    rv = render_inline(helm, CTX)
    assert rv.values == {
        "enabled": True,
        "name": "c1-prod",
        "replicas": 3,
        "script": '#!/bin/sh\necho "c1"\n',
        "zones": ["a", "b"],
    }


def test_template_values_override_top_level_keys_after_values() -> None:
    helm = {
        "values": {"replicas": 1, "zones": ["x"], "keep": "${ .ClusterName }"},
        "templateValues": {
            "replicas": "${ .ClusterValues.replicas }",
            "zones": "${ range .ClusterValues.zones }\n- zone-${ . }${ end }",
            "config": "a: 1\nb: ${ .ClusterLabels.region | quote }",
        },
    }
    rv = render_inline(helm, CTX)
    assert rv.values == {"replicas": 3, "zones": ["zone-a", "zone-b"], "keep": "c1", "config": {"a": 1, "b": "eu"}}
    assert [(s.kind, s.name, s.keys) for s in rv.sources] == [
        ("values", "values", ("keep", "replicas", "zones")),
        ("templateValues", "config", ("config",)),
        ("templateValues", "replicas", ("replicas",)),
        ("templateValues", "zones", ("zones",)),
    ]


def test_cluster_label_substitution_runs_even_with_disable_preprocess() -> None:
    helm = {
        "disablePreProcess": True,
        "values": {
            "region": "global.fleet.clusterLabels.region",
            "missing": "global.fleet.clusterLabels.nope",
            "hidden": "global.fleet.clusterLabels.foo.cattle.io/hidden",
            "nested": {"list": [{"env": "global.fleet.clusterLabels.env"}, "global.fleet.clusterLabels.env"]},
            "tpl": "${ .ClusterName }",
        },
        "templateValues": {"tpl": "ignored"},
    }
    rv = render_inline(helm, CTX)
    assert rv.values == {
        "region": "eu",
        "missing": "",
        "hidden": "",
        # maps inside lists are visited; bare strings in lists are not (Fleet's rule)
        "nested": {"list": [{"env": "prod"}, "global.fleet.clusterLabels.env"]},
        "tpl": "${ .ClusterName }",
    }


def test_label_substitution_depth_limit() -> None:
    deep: dict[str, Any] = {"v": "global.fleet.clusterLabels.env"}
    for _ in range(52):
        deep = {"d": deep}
    with pytest.raises(ValuesError, match="maximum recursion depth of 50"):
        render_inline({"values": deep}, CTX)


def test_templates_render_even_when_the_filtered_label_map_is_empty() -> None:
    bare = ClusterContext.from_cluster(
        {"metadata": {"name": "bare", "namespace": "ns", "labels": {"x.cattle.io/y": "1"}}}
    )
    assert render_inline({"values": {"n": "${ .ClusterName }"}}, bare).values == {"n": "bare"}


def test_target_overrides_merge_before_templating() -> None:
    root = {"values": {"image": {"tag": "1"}, "env": "${ .ClusterLabels.env }"}, "templateValues": {"a": "root"}}
    target = {
        "name": "prod",
        "helm": {"values": {"image": {"pull": "Always"}}, "templateValues": {"b": "${ .ClusterName }"}},
    }
    rv = render_inline(root, CTX, target=target)
    assert rv.values == {"image": {"tag": "1", "pull": "Always"}, "env": "prod", "a": "root", "b": "c1"}
    assert [s.describe() for s in rv.sources] == [
        "inline values (helm.values): sets env, image",
        "target prod (targets[].helm.values): sets image",
        'templateValues["a"]: sets a',
        'templateValues["b"] from target prod: sets b',
    ]


@pytest.mark.parametrize(
    ("helm", "message"),
    [
        (
            {"templateValues": {"replicas": "${ .ClusterValues.nope }"}},
            'cluster c1 in namespace fleet-default: failed to render templateValues["replicas"]: template: replicas:1:',
        ),
        (
            {"values": {"a": 1, "b": "${ .ClusterLabels.tier }"}},
            "cluster c1 in namespace fleet-default: failed to render values (at b): template: values:2:",
        ),
        (
            {"templateValues": {"x": "a: b: c"}},
            'cluster c1 in namespace fleet-default: templateValues["x"]: rendered output is not valid YAML: ',
        ),
        (
            {"values": {"a": '${ "[unclosed" }'}},
            "cluster c1 in namespace fleet-default: values: rendered output is not valid YAML: ",
        ),
        ({"values": {"a": "${ uuidv4 }"}}, 'function "uuidv4" is not allowed'),
        ({"templateValues": {"x": 3}}, 'templateValues["x"] must be a string template'),
    ],
)
def test_errors_name_the_cluster(helm: dict[str, Any], message: str) -> None:
    with pytest.raises(ValuesError) as info:
        render_inline(helm, CTX)
    assert message in str(info.value)
    assert info.value.retryable is False


def test_same_inputs_same_bytes_and_digest() -> None:
    helm = {"values": {"b": {"z": 1, "a": [3, 1]}, "a": "${ .ClusterName }", "long": "x " * 200}}
    first = render_inline(helm, CTX)
    reordered = {"values": {"long": "x " * 200, "a": "${ .ClusterName }", "b": {"a": [3, 1], "z": 1}}}
    second = render_inline(reordered, CTX)
    assert first.yaml == second.yaml
    assert first.digest == second.digest
    assert first.digest.startswith("sha256:") and len(first.digest) == 71
    assert first.yaml.index("a: c1") < first.yaml.index("b:")
    assert "\n" not in first.yaml.split("long: ")[1].rstrip("\n")  # never folded
    assert yaml.safe_load(first.yaml) == first.values
    assert list(first.values) == sorted(first.values)


def test_timestamps_stay_strings_and_empty_values() -> None:
    rv = render_inline({"templateValues": {"when": "2024-01-01", "empty": ""}}, CTX)
    assert rv.values == {"when": "2024-01-01", "empty": None}
    empty = render_inline({}, CTX)
    assert (empty.values, empty.yaml, empty.sources) == ({}, "{}\n", [])


async def test_values_from_order_defaults_and_provenance() -> None:
    reader = FakeReader(
        configmaps={
            ("app-ns", "base"): {"values.yaml": "a: cm1\nshared: {x: cm1, y: cm1}\nnum: 1"},
            ("other", "second"): {"custom": "a: cm2\nonly2: true"},
        },
        secrets={
            ("app-ns", "creds"): {"values.yaml": "shared: {x: secret}\npassword: hunter2"},
        },
    )
    helm = {
        "values": {"a": "inline", "shared": {"z": "inline"}, "password": "inline"},
        "valuesFrom": [
            {"configMapKeyRef": {"name": "base"}, "secretKeyRef": {"name": "creds"}},
            {"configMapKeyRef": {"name": "second", "namespace": "other", "key": "custom"}},
        ],
    }
    rv = await assemble(helm, CTX, release_namespace="app-ns", reader=reader)
    assert reader.calls == [
        ("configmap", "app-ns", "base"),
        ("secret", "app-ns", "creds"),
        ("configmap", "other", "second"),
    ]
    assert rv.values == {
        "a": "cm2",
        "num": 1,
        "only2": True,
        "password": "hunter2",
        "shared": {"x": "secret", "y": "cm1", "z": "inline"},
    }
    assert rv.describe() == [
        "inline values (helm.values): sets a, password, shared",
        "valuesFrom ConfigMap app-ns/base key values.yaml (resourceVersion 100): sets a, num, shared",
        "valuesFrom Secret app-ns/creds key values.yaml (resourceVersion 200): sets password, shared",
        "valuesFrom ConfigMap other/second key custom (resourceVersion 100): sets a, only2",
    ]
    label = "*** (from Secret app-ns/creds key values.yaml)"
    assert rv.redacted() == {
        "a": "cm2",
        "num": 1,
        "only2": True,
        "password": label,
        "shared": {"x": label, "y": "cm1", "z": "inline"},
    }
    assert "hunter2" not in repr(rv) and "hunter2" not in str(rv)
    assert "hunter2" in rv.yaml  # what Helm gets


async def test_later_configmap_clears_the_secret_mark() -> None:
    reader = FakeReader(
        configmaps={("ns", "after"): {"values.yaml": "token: public"}},
        secrets={("ns", "s"): {"values.yaml": "token: private\nother: private"}},
    )
    helm = {"valuesFrom": [{"secretKeyRef": {"name": "s"}}, {"configMapKeyRef": {"name": "after"}}]}
    rv = await assemble(helm, CTX, release_namespace="ns", reader=reader)
    assert rv.redacted() == {"token": "public", "other": "*** (from Secret ns/s key values.yaml)"}


async def test_values_from_is_not_templated() -> None:
    reader = FakeReader(configmaps={("ns", "cm"): {"values.yaml": "a: ${ .ClusterName }"}}, secrets={})
    rv = await assemble(
        {"valuesFrom": [{"configMapKeyRef": {"name": "cm"}}]}, CTX, release_namespace="ns", reader=reader
    )
    assert rv.values == {"a": "${ .ClusterName }"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"secretKeyRef": {"name": "s", "key": "nope"}},
            "cluster c1 in namespace fleet-default: valuesFrom secret ns/s key nope not found",
        ),
        (
            {"configMapKeyRef": {"name": "gone"}},
            "cluster c1 in namespace fleet-default: valuesFrom configmap ns/gone not found",
        ),
        (
            {"secretKeyRef": {"name": "bad"}},
            "valuesFrom secret ns/bad key values.yaml is not valid YAML: line 1 column",
        ),
        ({"secretKeyRef": {"name": "list"}}, "valuesFrom secret ns/list key values.yaml holds a list, not a map"),
    ],
)
async def test_values_from_errors_are_retryable_and_never_show_secret_content(
    entry: dict[str, Any], message: str
) -> None:
    reader = FakeReader(
        configmaps={},
        secrets={
            ("ns", "s"): {"values.yaml": "password: hunter2"},
            ("ns", "bad"): {"values.yaml": "hunter2: [unclosed"},
            ("ns", "list"): {"values.yaml": "- hunter2"},
        },
    )
    with pytest.raises(ValuesError) as info:
        await assemble({"valuesFrom": [entry]}, CTX, release_namespace="ns", reader=reader)
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.retryable is True


async def test_values_from_without_reader() -> None:
    with pytest.raises(ValuesError, match="no reader"):
        await assemble({"valuesFrom": [{"configMapKeyRef": {"name": "x"}}]}, CTX, release_namespace="ns", reader=None)
    rv = await assemble({"values": {"a": 1}}, CTX, release_namespace="ns", reader=None)
    assert rv.values == {"a": 1}


async def test_billion_laughs_in_a_configmap_is_rejected() -> None:
    doc = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(9):
        name = f"l{i}"
        refs = ", ".join([f"*{prev}"] * 10)
        doc += f"{name}: &{name} [{refs}]\n"
        prev = name
    reader = FakeReader(configmaps={("ns", "bomb"): {"values.yaml": doc}}, secrets={})
    with pytest.raises(ValuesError, match="too large"):
        await assemble(
            {"valuesFrom": [{"configMapKeyRef": {"name": "bomb"}}]}, CTX, release_namespace="ns", reader=reader
        )


def test_values_template_errors_name_the_key() -> None:
    helm = {"values": {"a": 1, "image": {"repo": "x", "tag": "${ .ClusterLabels.tier }"}}}
    with pytest.raises(ValuesError) as info:
        render_inline(helm, CTX)
    assert str(info.value).startswith(
        "cluster c1 in namespace fleet-default: failed to render values (at image.tag): template: values:4:"
    )


async def test_assemble_equals_render_inline_without_values_from() -> None:
    helm = {"values": {"a": "${ .ClusterName }"}, "templateValues": {"b": "${ .ClusterLabels.env }"}}
    inline = render_inline(helm, CTX)
    full = await assemble(helm, CTX, release_namespace="ns", reader=None)
    assert (inline.yaml, inline.digest, inline.sources) == (full.yaml, full.digest, full.sources)


def test_realistic_values_document() -> None:
    ctx = ClusterContext.from_cluster(
        {
            "metadata": {"name": "c1", "namespace": "ns", "labels": {"env": "prod"}},
            "spec": {"templateValues": {"hosts": ["a.example.com", "b.example.com"], "big": 1000000}},
        }
    )
    helm = {
        "values": {
            "ingress": {
                "hosts": [{"host": "${ .ClusterName }.example.com", "paths": ["/"]}],
                "annotations": {"x/y": '${ printf "%s: %s" .ClusterName .ClusterLabels.env }'},
            },
            "quoted": "${ .ClusterLabels.env | quote }",
            "big": "${ .ClusterValues.big }",
            "list": "${ toJson .ClusterValues.hosts }",
            "conf": "server {\n  listen 80;\n  name ${ .ClusterName };\n}\n",
            "lead": " ${ .ClusterName }",
            "${ .ClusterName }-key": 1,
            "bool": '${ if eq .ClusterLabels.env "prod" }true${ else }false${ end }',
        }
    }
    assert render_inline(helm, ctx).values == {
        "big": 1000000,
        "bool": True,
        "c1-key": 1,
        "conf": "server {\n  listen 80;\n  name c1;\n}\n",
        "ingress": {"annotations": {"x/y": "c1: prod"}, "hosts": [{"host": "c1.example.com", "paths": ["/"]}]},
        "lead": " c1",
        "list": ["a.example.com", "b.example.com"],
        "quoted": "prod",
    }


async def test_values_from_multi_document_is_an_error() -> None:
    reader = FakeReader(configmaps={}, secrets={("ns", "s"): {"values.yaml": "a: hunter2\n---\nb: 2\n"}})
    with pytest.raises(ValuesError) as info:
        await assemble({"valuesFrom": [{"secretKeyRef": {"name": "s"}}]}, CTX, release_namespace="ns", reader=reader)
    assert "expected one YAML document, found several" in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_concurrent_assembles_share_compiled_templates_safely() -> None:
    import asyncio

    helm = {
        "values": {"r": "${ range until 50 }${ . }${ end }", "n": "${ .ClusterName }"},
        "templateValues": {"t": "${ toJson .ClusterValues }"},
    }
    contexts = [ClusterContext.local(name=f"c{i % 5}", values={"i": i % 5}) for i in range(40)]
    results = await asyncio.gather(*(assemble(helm, c, release_namespace="ns", reader=None) for c in contexts))
    for ctx, rv in zip(contexts, results, strict=True):
        assert rv.values["n"] == ctx.name
        assert rv.values["t"] == {"i": ctx.values["i"]}
        assert rv.digest == render_inline(helm, ctx).digest


async def test_cross_namespace_secret_reference_is_refused_without_reading() -> None:
    reader = FakeReader({}, {("other", "s"): {"values.yaml": "password: hunter2"}})
    with pytest.raises(ValuesError) as err:
        await assemble(
            {"valuesFrom": [{"secretKeyRef": {"name": "s", "namespace": "other"}}]},
            CTX,
            release_namespace="ns",
            reader=reader,
        )
    assert "cross-namespace Secret references are refused" in err.value.message
    assert err.value.retryable is False and reader.calls == []
    # naming the release namespace explicitly is fine
    reader.secrets[("ns", "s")] = {"values.yaml": "a: 1"}
    rv = await assemble(
        {"valuesFrom": [{"secretKeyRef": {"name": "s", "namespace": "ns"}}]}, CTX, release_namespace="ns", reader=reader
    )
    assert rv.values == {"a": 1}


def test_values_without_a_template_action_come_back_as_written() -> None:
    values = {
        "plain": "yes",
        "dollar": "$HOME and $ {not} an action",
        "n": 1.5,
        "nested": {"list": [1, "2", None, True], "empty": {}},
        "date": "2024-01-01",
    }
    rv = render_inline({"values": values}, CTX)
    assert rv.values == values
    assert rv.values["nested"] is not values["nested"]  # a copy: the caller's spec is never changed
    assert rv.yaml == yaml.safe_dump(rv.values, sort_keys=True) or rv.values == yaml.safe_load(rv.yaml)
