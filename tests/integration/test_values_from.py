"""valuesFrom against a real kube-apiserver (the `downstream_cluster` control plane): ConfigMap and Secret
reads through `KubeValuesFromReader`, merge order, errors, and digest stability over repeated renders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from kubernetes.aio import config as kconfig

from helmops.values import ClusterContext, ValuesError, assemble
from helmops.values.kube_reader import KubeValuesFromReader

pytestmark = pytest.mark.integration

NS = "values-from-it"

CTX = ClusterContext.from_cluster(
    {
        "metadata": {"name": "downstream", "namespace": "fleet-default", "labels": {"env": "staging"}},
        "spec": {"templateValues": {"replicas": 2}},
    }
)


def _apply(cluster, obj: dict) -> None:  # type: ignore[no-untyped-def]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.fixture(scope="module")
def seeded(downstream_cluster):  # type: ignore[no-untyped-def]
    cp = downstream_cluster
    _apply(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    _apply(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shared"}})
    _apply(
        cp,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-values", "namespace": NS},
            "data": {"values.yaml": "replicas: 5\nimage:\n  tag: cm\n  pullPolicy: IfNotPresent\nfromCm: true\n"},
        },
    )
    _apply(
        cp,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-secret", "namespace": NS},
            "stringData": {"secret.yaml": "image:\n  tag: from-secret\ndb:\n  password: s3cr3t-pw\n"},
        },
    )
    _apply(
        cp,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "overrides", "namespace": "shared"},
            "data": {"values.yaml": "image:\n  tag: last-wins\n"},
        },
    )
    return cp


@pytest.fixture
async def reader(seeded) -> AsyncIterator[KubeValuesFromReader]:  # type: ignore[no-untyped-def]
    api = await kconfig.new_client_from_config(config_file=str(seeded.kubeconfig))
    async with api:
        yield KubeValuesFromReader(api)


HELM = {
    "values": {"name": "${ .ClusterName }", "image": {"repository": "nginx", "tag": "inline"}, "replicas": 1},
    "templateValues": {"env": "${ .ClusterLabels.env }"},
    "valuesFrom": [
        {
            "configMapKeyRef": {"name": "app-values"},
            "secretKeyRef": {"name": "app-secret", "key": "secret.yaml"},
        },
    ],
}


async def test_configmap_then_secret_merged_last(reader: KubeValuesFromReader, seeded) -> None:  # type: ignore[no-untyped-def]
    rv = await assemble(HELM, CTX, release_namespace=NS, reader=reader)
    assert rv.values == {
        "db": {"password": "s3cr3t-pw"},
        "env": "staging",
        "fromCm": True,
        "image": {"pullPolicy": "IfNotPresent", "repository": "nginx", "tag": "from-secret"},
        "name": "downstream",
        "replicas": 5,
    }
    cm_rv = seeded.kubectl("get", "configmap", "app-values", "-n", NS, "-o", "jsonpath={.metadata.resourceVersion}")
    kinds = [(s.kind, s.namespace, s.name, s.key) for s in rv.sources]
    assert kinds == [
        ("values", None, "values", None),
        ("templateValues", None, "env", None),
        ("configMap", NS, "app-values", "values.yaml"),
        ("secret", NS, "app-secret", "secret.yaml"),
    ]
    assert rv.sources[2].resource_version == cm_rv.stdout.strip()
    assert rv.sources[3].resource_version
    assert "s3cr3t-pw" not in repr(rv)
    assert rv.redacted()["db"]["password"] == f"*** (from Secret {NS}/app-secret key secret.yaml)"
    assert rv.redacted()["image"]["tag"] == f"*** (from Secret {NS}/app-secret key secret.yaml)"


async def test_entries_apply_in_order_with_explicit_namespace(reader: KubeValuesFromReader) -> None:
    helm = {
        **HELM,
        "valuesFrom": [*HELM["valuesFrom"], {"configMapKeyRef": {"name": "overrides", "namespace": "shared"}}],
    }
    rv = await assemble(helm, CTX, release_namespace=NS, reader=reader)
    assert rv.values["image"]["tag"] == "last-wins"
    assert rv.redacted()["image"]["tag"] == "last-wins"  # a later ConfigMap replaced the Secret's leaf


async def test_digest_is_stable_over_100_renders(reader: KubeValuesFromReader) -> None:
    first = await assemble(HELM, CTX, release_namespace=NS, reader=reader)
    for _ in range(100):
        again = await assemble(HELM, CTX, release_namespace=NS, reader=reader)
        assert again.yaml == first.yaml
        assert again.digest == first.digest


async def test_digest_changes_when_the_secret_changes(reader: KubeValuesFromReader, seeded) -> None:  # type: ignore[no-untyped-def]
    before = await assemble(HELM, CTX, release_namespace=NS, reader=reader)
    _apply(
        seeded,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rotating", "namespace": NS},
            "stringData": {"values.yaml": "token: one\n"},
        },
    )
    helm = {**HELM, "valuesFrom": [*HELM["valuesFrom"], {"secretKeyRef": {"name": "rotating"}}]}
    one = await assemble(helm, CTX, release_namespace=NS, reader=reader)
    seeded.kubectl(
        "patch", "secret", "rotating", "-n", NS, "-p", json.dumps({"stringData": {"values.yaml": "token: two\n"}})
    )
    two = await assemble(helm, CTX, release_namespace=NS, reader=reader)
    assert len({before.digest, one.digest, two.digest}) == 3
    assert one.sources[-1].resource_version != two.sources[-1].resource_version


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"configMapKeyRef": {"name": "absent"}}, f"valuesFrom configmap {NS}/absent not found"),
        ({"secretKeyRef": {"name": "absent"}}, f"valuesFrom secret {NS}/absent not found"),
        ({"secretKeyRef": {"name": "app-secret"}}, f"valuesFrom secret {NS}/app-secret key values.yaml not found"),
        (
            {"configMapKeyRef": {"name": "app-values", "key": "nope"}},
            f"valuesFrom configmap {NS}/app-values key nope not found",
        ),
    ],
)
async def test_missing_objects_and_keys(reader: KubeValuesFromReader, entry: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValuesError) as info:
        await assemble({"valuesFrom": [entry]}, CTX, release_namespace=NS, reader=reader)
    assert str(info.value) == f"cluster downstream in namespace fleet-default: {message}"
    assert info.value.retryable
    assert "s3cr3t" not in str(info.value)
