"""The API models read every valid manifest and write it back unchanged, and reject the invalid ones."""

from __future__ import annotations

from typing import Any

import pytest
from manifests import corpus  # tests/manifests/corpus.py (tests/ is on sys.path via its conftest)
from pydantic import ValidationError

from helmops.api import (
    Cluster,
    ClusterGroup,
    HelmApp,
    HelmAppStatus,
    problems_from_validation_error,
    validate_app,
)
from helmops.api.spec import HelmAppSpec

VALID = corpus.load("valid")
INVALID = corpus.load("invalid")
CLUSTERS = corpus.load("clusters")
SEMANTIC = corpus.load("semantic")


def test_corpora_are_big_enough() -> None:
    assert len(VALID) >= 15
    assert len(INVALID) >= 15
    assert all(m.expect for m in INVALID), "every invalid manifest names the field it gets wrong"


@pytest.mark.parametrize("manifest", VALID, ids=lambda m: m.id)
def test_valid_manifest_round_trips(manifest: Any) -> None:
    app = HelmApp.model_validate(manifest.doc)
    assert app.model_dump(by_alias=True, exclude_unset=True, mode="json") == manifest.doc
    assert app.to_dict() == manifest.doc


@pytest.mark.parametrize("manifest", INVALID, ids=lambda m: m.id)
def test_invalid_manifest_is_rejected_naming_the_field(manifest: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        HelmApp.model_validate(manifest.doc)
    paths = [p.path for p in problems_from_validation_error(caught.value)]
    assert any(path == manifest.expect or path.startswith(manifest.expect + ".") for path in paths), paths


@pytest.mark.parametrize("manifest", CLUSTERS, ids=lambda m: m.id)
def test_cluster_objects_parse(manifest: Any) -> None:
    model = Cluster if manifest.doc["kind"] == "Cluster" else ClusterGroup
    obj = model.model_validate(manifest.doc)
    assert obj.metadata.name == manifest.name
    assert obj.metadata.labels == manifest.doc["metadata"].get("labels", {})


def test_cluster_fields() -> None:
    doc = next(m.doc for m in CLUSTERS if m.id == "cluster-downstream")
    cluster = Cluster.model_validate(doc)
    assert cluster.spec.kube_config_secret == "downstream-kubeconfig"
    assert cluster.spec.kube_config_secret_namespace == "fleet-default"
    assert cluster.spec.template_values == {
        "replicas": 3,
        "ingress": {"host": "downstream.example.com"},
        "list": ["a", "b"],
    }
    assert cluster.spec.paused is False
    group = ClusterGroup.model_validate(next(m.doc for m in CLUSTERS if m.id == "clustergroup-prod"))
    assert group.spec.selector is not None
    assert group.spec.selector.matches({"env": "prod", "region": "us-east-1"})
    assert not group.spec.selector.matches({"env": "prod", "region": "ap-south-1"})


def test_python_names_and_wire_names() -> None:
    app = HelmApp.model_validate(next(m.doc for m in VALID if m.id == "16-helm-options"))
    helm = app.spec.helm
    assert helm.disable_dns and helm.skip_schema_validation and helm.wait_for_jobs
    assert helm.release_name == "a2345678901234567890123456789012345678901234567890123"
    # Built from Python names, dumped with Fleet's names (including the non-camelCase ones).
    spec = HelmAppSpec(
        helm={"chart": "x", "disable_dns": True},  # type: ignore[arg-type]
        insecure_skip_tls_verify=True,
        delete_crd_resources=True,
        polling_interval="5m",
    )
    assert spec.to_dict() == {
        "helm": {"chart": "x", "disableDNS": True},
        "insecureSkipTLSVerify": True,
        "deleteCRDResources": True,
        "pollingInterval": "5m",
    }


def test_unset_fields_have_fleet_zero_values() -> None:
    app = HelmApp.model_validate(next(m.doc for m in VALID if m.id == "20-minimal"))
    assert app.spec.targets == []
    assert app.spec.paused is False
    assert app.spec.namespace is None
    assert app.spec.helm.version is None
    assert app.spec.correct_drift.enabled is False
    assert app.status is None


def test_unknown_fields_are_dropped_like_the_api_server_prunes_them() -> None:
    doc = {"spec": {"helm": {"chart": "x", "notAField": 1}, "alsoNot": True}}
    assert HelmApp.model_validate(doc).to_dict() == {"spec": {"helm": {"chart": "x"}}}


def test_strict_types_match_the_api_server() -> None:
    for bad in ({"paused": "true"}, {"helm": {"timeoutSeconds": "30"}}, {"helm": {"maxHistory": True}}):
        with pytest.raises(ValidationError):
            HelmAppSpec.model_validate(bad)


@pytest.mark.parametrize("value", ["0", "5m", "1h30m", "1.5s", "300ms", "10us", "10µs", "2562047h"])
def test_polling_interval_accepted(value: str) -> None:
    assert HelmAppSpec.model_validate({"pollingInterval": value}).polling_interval == value


@pytest.mark.parametrize("value", ["", "5", "1d", "-5m", "+5m", "5 m", "2562048h", "1w", "m5"])
def test_polling_interval_rejected(value: str) -> None:
    with pytest.raises(ValidationError):
        HelmAppSpec.model_validate({"pollingInterval": value})


FLEET_STATUS: dict[str, Any] = corpus.load("status")[0].doc


def test_status_round_trips() -> None:
    status = HelmAppStatus.model_validate(FLEET_STATUS)
    assert status.to_dict() == FLEET_STATUS
    assert status.conditions[0].type == "Ready"
    assert status.display.ready_bundle_deployments == "1/2"
    assert status.per_cluster_resource_counts["fleet-default/a"].ready == 1
    app = HelmApp.model_validate({"spec": {"helm": {"chart": "x"}}, "status": FLEET_STATUS})
    assert app.to_dict()["status"] == FLEET_STATUS


def test_status_written_by_python_always_carries_what_fleets_schema_requires() -> None:
    from helmops.api.status import ResourceSummaryEntry

    entry = ResourceSummaryEntry(kind="ConfigMap", name="c")
    dumped = HelmAppStatus(resources=[entry]).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert "perClusterState" in dumped["resources"][0]


def test_read_only_mappings_such_as_kopf_bodies_are_accepted() -> None:
    import kopf

    doc = next(m.doc for m in VALID if m.id == "21-free-form-values")
    body = kopf.Body(doc)
    assert not isinstance(body, dict)
    assert HelmApp.model_validate(body).to_dict() == doc
    assert HelmAppSpec.model_validate(body.spec).to_dict() == doc["spec"]


def test_validation_errors_become_problems_with_manifest_paths() -> None:
    doc = {"spec": {"rolloutStrategy": {"maxUnavailable": True}, "pollingInterval": "1d", "targets": [{"helm": 1}]}}
    with pytest.raises(ValidationError) as caught:
        HelmApp.model_validate(doc)
    problems = {p.path: p.message for p in problems_from_validation_error(caught.value)}
    assert problems == {
        "spec.rolloutStrategy.maxUnavailable": "Input should be an integer or a string such as 25%",
        "spec.pollingInterval": problems["spec.pollingInterval"],
        "spec.targets[0].helm": problems["spec.targets[0].helm"],
    }
    assert problems["spec.pollingInterval"].startswith("must be '0' or a Go duration")


@pytest.mark.parametrize("manifest", VALID, ids=lambda m: m.id)
def test_valid_manifests_have_no_semantic_errors(manifest: Any) -> None:
    problems = validate_app(HelmApp.model_validate(manifest.doc))
    assert [str(p) for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize("manifest", SEMANTIC, ids=lambda m: m.id)
def test_semantic_corpus_reports_exactly_the_declared_problems(manifest: Any) -> None:
    assert manifest.problems, "each file declares its problems"
    app = HelmApp.model_validate(manifest.doc)
    assert app.to_dict() == manifest.doc
    assert sorted((p.path, p.severity) for p in validate_app(app)) == sorted(manifest.problems)


def test_objects_built_in_python_dump_as_complete_manifests() -> None:
    from helmops.api import ObjectMeta

    app = HelmApp(metadata=ObjectMeta(name="x"), spec=HelmAppSpec(helm={"chart": "c"}))  # type: ignore[arg-type]
    assert app.manifest() == {
        "apiVersion": "fleet.cattle.io/v1alpha1",
        "kind": "HelmApp",
        "metadata": {"name": "x"},
        "spec": {"helm": {"chart": "c"}},
    }
    assert Cluster().manifest()["kind"] == "Cluster"
    assert ClusterGroup().manifest() == {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "ClusterGroup"}
