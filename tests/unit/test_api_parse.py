"""Where a HelmApp as read becomes the typed model (helmops.api.parse): strictly for the reconcile, leniently
for a deletion (an invalid HelmApp must stay finalizable), metadata only for naming a refused one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from helmops.api import release_name, release_namespace
from helmops.api.parse import fallback_release_name, identify_helmapp, lenient_helmapp, parse_helmapp

META = {"name": "My_App", "namespace": "team", "uid": "u1", "resourceVersion": "7", "generation": 3}


def _raw(**spec: Any) -> dict[str, Any]:
    return {"metadata": dict(META), "spec": spec, "status": {"anything": ["a", 1]}}


def test_strict_parse_reads_metadata_and_spec_but_not_the_status() -> None:
    app = parse_helmapp(_raw(namespace="ns", helm={"chart": "c", "timeoutSeconds": 30}))
    assert app.key == ("team", "My_App") and app.metadata.uid == "u1" and app.metadata.generation == 3
    assert app.spec.helm.timeout_seconds == 30 and app.status is None and app.unparsed == frozenset()
    assert app.ref()["metadata"] == {
        "name": "My_App", "namespace": "team", "uid": "u1", "resourceVersion": "7", "finalizers": []
    }  # fmt: skip
    with pytest.raises(ValidationError) as err:
        parse_helmapp(_raw(helm={"chart": "c", "timeoutSeconds": "30"}))
    assert err.value.errors()[0]["loc"] == ("helm", "timeoutSeconds")  # spec-relative, as problems report it


def test_lenient_parse_of_a_valid_helmapp_is_the_strict_one() -> None:
    raw = _raw(namespace="ns", helm={"chart": "c", "releaseName": "rel"}, targets=[{"clusterName": "a"}])
    assert lenient_helmapp(raw) == parse_helmapp(raw)
    assert release_name("My_App", lenient_helmapp(_raw(helm={"chart": "c"})).spec) != fallback_release_name("My_App")


def test_lenient_parse_keeps_what_parses_and_the_release_as_written() -> None:
    raw = _raw(
        namespace="ns",
        keepResources=True,
        serviceAccount="deployer",
        targets=[{"clusterName": 3}],
        helm={"chart": "c", "releaseName": "Not_Valid", "timeoutSeconds": "soon"},
    )
    app = lenient_helmapp(raw)
    assert app.unparsed == {"targets", "helm.releaseName", "helm.timeoutSeconds"}
    assert app.spec.keep_resources and app.spec.service_account == "deployer" and app.spec.targets == []
    assert app.spec.helm.chart == "c" and app.spec.helm.timeout_seconds == 0
    assert release_name(app.metadata.name, app.spec) == "Not_Valid" and release_namespace(app.spec) == "ns"
    # without a releaseName: the name finalize has always derived for a spec the model rejects
    app = lenient_helmapp(_raw(defaultNamespace="d", helm={"chart": "c", "timeoutSeconds": "soon"}))
    assert release_name(app.metadata.name, app.spec) == fallback_release_name("My_App")
    assert release_namespace(app.spec) == "d" and app.key == ("team", "My_App")


def test_lenient_parse_of_a_too_deep_spec_reads_only_scalars() -> None:
    deep: dict[str, Any] = {"x": 1}
    for _ in range(5000):
        deep = {"x": deep}
    app = lenient_helmapp(_raw(namespace="ns", keepResources=True, helm={"chart": "c", "values": deep}))
    assert app.spec.keep_resources and app.spec.helm.values is None and release_namespace(app.spec) == "ns"


def test_identify_reads_only_the_metadata() -> None:
    app = identify_helmapp({"metadata": dict(META), "spec": {"helm": "not a map"}})
    assert app.key == ("team", "My_App") and app.metadata.resource_version == "7" and app.spec.helm.chart is None
