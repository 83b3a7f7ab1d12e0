"""helmops.values takes plain mappings; this checks it accepts what the API models dump (by_alias=True),
including the None-valued fields pydantic emits for unset options."""

from __future__ import annotations

import pytest

from helmops.values import ClusterContext, assemble, render_inline

models = pytest.importorskip("helmops.api.objects")

MANIFEST = {
    "apiVersion": "fleet.cattle.io/v1alpha1",
    "kind": "HelmApp",
    "metadata": {"name": "app", "namespace": "fleet-default"},
    "spec": {
        "helm": {
            "chart": "hello",
            "repo": "https://charts.example.com",
            "values": {"message": "hi ${ .ClusterName }", "replicas": 1},
            "templateValues": {"replicas": "${ .ClusterValues.replicas }"},
            "valuesFrom": [{"configMapKeyRef": {"name": "extra"}}],
        },
        "targets": [
            {"name": "prod", "clusterSelector": {"matchLabels": {"env": "prod"}}, "helm": {"values": {"tier": "gold"}}}
        ],
    },
}
CLUSTER = {
    "apiVersion": "fleet.cattle.io/v1alpha1",
    "kind": "Cluster",
    "metadata": {"name": "c1", "namespace": "fleet-default", "labels": {"env": "prod"}},
    "spec": {"templateValues": {"replicas": 4}},
}


class OneConfigMap:
    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        assert (namespace, name) == ("apps", "extra")
        return {"values.yaml": "extra: true"}, "7"

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        raise AssertionError("no secret configured")


async def test_model_dump_output_is_accepted() -> None:
    app = models.HelmApp.model_validate(MANIFEST)
    spec = app.spec.model_dump(by_alias=True)
    ctx = ClusterContext.from_cluster(models.Cluster.model_validate(CLUSTER).model_dump(by_alias=True))
    rv = await assemble(spec["helm"], ctx, release_namespace="apps", reader=OneConfigMap(), target=spec["targets"][0])
    assert rv.values == {"extra": True, "message": "hi c1", "replicas": 4, "tier": "gold"}
    plain = render_inline(
        MANIFEST["spec"]["helm"], ClusterContext.from_cluster(CLUSTER), target=MANIFEST["spec"]["targets"][0]
    )
    assert {k: v for k, v in rv.values.items() if k != "extra"} == plain.values
