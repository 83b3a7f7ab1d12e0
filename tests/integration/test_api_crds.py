"""The generated CRDs against a real kube-apiserver: they install, document their fields, keep every valid
manifest as written, reject every invalid one naming the field, and Fleet's own CRD accepts the same corpus."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifests import corpus  # tests/manifests/corpus.py (tests/ is on sys.path via its conftest)

from helmops.api import Cluster, ClusterGroup, HelmApp
from helmops.api.crd import CRD_NAMES
from support.controlplane import ControlPlane
from support.tools import reference_dir

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
CRDS = REPO / "crds"
FLEET_HELMAPP_CRD = reference_dir() / "fleet-v0.12.0-helmapp-crd.yaml"
HELMAPP_CRD = "helmapps.fleet.cattle.io"


VALID = corpus.load("valid")
INVALID = corpus.load("invalid")
CLUSTERS = corpus.load("clusters")
SEMANTIC = corpus.load("semantic")


def _namespace(cluster: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    return name


def _wait_established(cluster: ControlPlane, *names: str) -> None:
    for name in names:
        deadline = time.monotonic() + 60
        while True:
            out = cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{name}", check=False)
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert out.returncode == 0, out.stderr


def _create_unvalidated(cluster: ControlPlane, namespace: str, text: str) -> Any:
    """Create without kubectl's field validation: the API server prunes what its schema lacks."""
    return cluster.kubectl("create", "--validate=false", "-n", namespace, "-f", "-", input=text, check=False)


def _apply(cluster: ControlPlane, namespace: str, text: str, *extra: str) -> Any:
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=helmops-api-test",
        "-n",
        namespace,
        "-f",
        "-",
        *extra,
        input=text,
        check=False,
    )


def _get(cluster: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", kind, name, "-n", namespace)  # type: ignore[return-value]


def _user_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata", {})
    return {key: meta[key] for key in ("name", "labels", "annotations") if key in meta}


def _field_named(message: str, expected: str) -> bool:
    """Whether an API server error names the field at ``expected`` (list indices and leading dots aside)."""

    def norm(text: str) -> str:
        return re.sub(r"\[[^\]]*\]", "", text).replace("..", ".")

    return norm(expected) in norm(message)


@pytest.fixture(scope="module")
def our_crds(management_cluster: ControlPlane) -> ControlPlane:
    out = management_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    assert all(name in out.stdout for name in CRD_NAMES), out.stdout
    _wait_established(management_cluster, *CRD_NAMES)
    return management_cluster


@pytest.fixture(scope="module")
def helmapp_namespace(our_crds: ControlPlane) -> str:
    return _namespace(our_crds, "api-valid")


def test_crds_installed_as_generated(our_crds: ControlPlane) -> None:
    for name in CRD_NAMES:
        live = our_crds.kubectl_json("get", "crd", name)
        committed = yaml.safe_load((CRDS / f"{name}.yaml").read_text())
        live_schema = live["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[index]
        assert live_schema == committed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}  # type: ignore[index]
        assert conditions.get("NonStructuralSchema") is None
        assert conditions["Established"] == "True"


def test_kubectl_explain_shows_documented_fields(our_crds: ControlPlane) -> None:
    # The OpenAPI document is published a moment after the CRD is established; poll for it.
    deadline = time.monotonic() + 90
    while True:
        out = our_crds.kubectl("explain", "helmapp.spec.helm", check=False)
        if (out.returncode == 0 and "releaseName" in out.stdout) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "The chart and how Helm deploys it." in text
    for field in (
        "chart",
        "repo",
        "version",
        "releaseName",
        "values",
        "templateValues",
        "valuesFrom",
        "timeoutSeconds",
        "takeOwnership",
        "disableDNS",
    ):
        assert re.search(rf"\b{field}\b", out.stdout), field
    assert "Helm release name. When empty it is derived from the HelmApp name." in text
    polling = our_crds.kubectl("explain", "helmapp.spec.pollingInterval").stdout
    assert "Go duration" in " ".join(polling.split())
    group = our_crds.kubectl("explain", "clustergroup.spec.selector").stdout
    assert "matchExpressions" in group


@pytest.mark.parametrize("manifest", VALID, ids=lambda m: m.id)
def test_valid_manifest_applies_and_reads_back_unchanged(
    our_crds: ControlPlane, helmapp_namespace: str, manifest: Any
) -> None:
    out = _apply(our_crds, helmapp_namespace, manifest.text)
    assert out.returncode == 0, out.stderr
    live = _get(our_crds, "helmapp", helmapp_namespace, manifest.name)
    assert live["spec"] == manifest.doc["spec"]
    assert _user_metadata(live) == _user_metadata(manifest.doc)
    # ...and the controller's models read the stored object without complaint.
    app = HelmApp.model_validate(live)
    assert app.to_dict()["spec"] == manifest.doc["spec"]


@pytest.mark.parametrize("manifest", INVALID, ids=lambda m: m.id)
def test_invalid_manifest_is_rejected_naming_the_field(
    our_crds: ControlPlane, helmapp_namespace: str, manifest: Any
) -> None:
    out = _apply(our_crds, helmapp_namespace, manifest.text)
    assert out.returncode != 0, f"accepted: {manifest.path.name}"
    assert _field_named(out.stderr, manifest.expect), out.stderr
    missing = our_crds.kubectl("get", "helmapp", manifest.name, "-n", helmapp_namespace, check=False)
    assert missing.returncode != 0


POLLING_CASES = [
    "0",
    "0s",
    "0.0s",
    "5m",
    "00005m",
    "1h30m",
    "1.5s",
    ".5s",
    "1.s",
    "300ms",
    "10us",
    "10\u00b5s",
    "10\u03bcs",
    "1ns",
    "1h1h",
    "2562047h",
    "2562046h59m59.999s",
    "2562047h1s",
    "2562048h",
    "1d",
    "1w",
    "5",
    "-5m",
    "+5m",
    "5 m",
    "m",
    ".s",
    "1e3s",
    "",
    "1h1m1s1h1m1s1h1m1s1h1m1s1h1m1s1h1m",
]
RELEASE_NAME_CASES = [
    "a",
    "1",
    "a.b",
    "a-b.c-d",
    "hello.v1-beta.0",
    "-a",
    "a-",
    "a..b",
    "a.-b",
    "A",
    "a_b",
    "a" * 53,
    "a" * 54,
    "",
]


def test_cel_and_pattern_rules_agree_with_the_models(our_crds: ControlPlane, helmapp_namespace: str) -> None:
    """Differential: the API server (CEL, OpenAPI pattern) and the pydantic models accept the same strings."""
    from pydantic import ValidationError

    from helmops.api import HelmAppSpec, is_polling_interval

    def server_accepts(spec: dict[str, Any]) -> bool:
        doc = {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp", "metadata": {"name": "probe"}}
        out = _apply(our_crds, helmapp_namespace, json.dumps({**doc, "spec": spec}), "--dry-run=server")
        return out.returncode == 0

    def model_accepts(spec: dict[str, Any]) -> bool:
        try:
            HelmAppSpec.model_validate(spec)
        except ValidationError:
            return False
        return True

    disagree = []
    for text in POLLING_CASES:
        spec = {"pollingInterval": text}
        verdicts = (server_accepts(spec), model_accepts(spec), is_polling_interval(text))
        if len(set(verdicts)) != 1:
            disagree.append((text, verdicts))
    for text in RELEASE_NAME_CASES:
        spec = {"helm": {"releaseName": text}}
        if server_accepts(spec) != model_accepts(spec):
            disagree.append((text, (server_accepts(spec), model_accepts(spec))))
    assert disagree == []


@pytest.mark.parametrize("manifest", SEMANTIC, ids=lambda m: m.id)
def test_semantic_problems_are_not_admission_errors(our_crds: ControlPlane, manifest: Any) -> None:
    # What Fleet's CRD lets through, ours does too: these are reported by validate(), not refused.
    namespace = "default"
    out = _apply(our_crds, namespace, manifest.text, "--dry-run=server")
    assert out.returncode == 0, out.stderr


def test_get_columns_and_fleet_category(our_crds: ControlPlane) -> None:
    namespace = _namespace(our_crds, "api-columns")
    manifest = next(m for m in VALID if m.id == "01-http-repo")
    assert _apply(our_crds, namespace, manifest.text).returncode == 0
    header = our_crds.kubectl("get", "helmapps", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "REPO", "CHART", "VERSION", "BUNDLEDEPLOYMENTS-READY", "STATUS", "AGE"]
    listed = our_crds.kubectl("get", "fleet", "-n", namespace, "-o", "name").stdout
    assert f"helmapp.fleet.cattle.io/{manifest.name}" in listed


def test_status_subresource_keeps_fleet_status_and_our_additions(our_crds: ControlPlane) -> None:
    namespace = _namespace(our_crds, "api-status")
    manifest = next(m for m in VALID if m.id == "20-minimal")
    assert _apply(our_crds, namespace, manifest.text).returncode == 0
    status = {**corpus.load("status")[0].doc, "somethingNewer": {"kept": True}}
    our_crds.kubectl(
        "patch",
        "helmapp",
        manifest.name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    live = _get(our_crds, "helmapp", namespace, manifest.name)
    assert live["status"] == status
    assert HelmApp.model_validate(live).status is not None
    # A spec write never touches status (status subresource), and vice versa.
    assert _apply(our_crds, namespace, manifest.text.replace("chart: hello", "chart: hello2")).returncode == 0
    assert _get(our_crds, "helmapp", namespace, manifest.name)["status"] == status


@pytest.mark.parametrize("manifest", CLUSTERS, ids=lambda m: m.id)
def test_fleet_shaped_cluster_objects(our_crds: ControlPlane, manifest: Any) -> None:
    namespace = _namespace(our_crds, "api-clusters")
    out = _apply(our_crds, namespace, manifest.text)
    assert out.returncode == 0, out.stderr
    kind = manifest.doc["kind"].lower()
    live = _get(our_crds, kind, namespace, manifest.name)
    assert live["spec"] == manifest.doc["spec"]
    assert _user_metadata(live) == _user_metadata(manifest.doc)
    model = Cluster if kind == "cluster" else ClusterGroup
    assert model.model_validate(live).metadata.name == manifest.name


# -- Fleet's own CRD, on the downstream control plane so ours stays installed on management -----------


@pytest.fixture(scope="module")
def fleet_crd(downstream_cluster: ControlPlane) -> Iterator[ControlPlane]:
    if not FLEET_HELMAPP_CRD.is_file():
        pytest.skip(f"{FLEET_HELMAPP_CRD} is not available")
    cluster = downstream_cluster
    before = cluster.kubectl("get", "crd", HELMAPP_CRD, "-o", "json", check=False)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(FLEET_HELMAPP_CRD))
    _wait_established(cluster, HELMAPP_CRD)
    yield cluster
    # Put back whatever was there, so other tests sharing this control plane are unaffected.
    if before.returncode == 0:
        previous = json.loads(before.stdout)
        previous.pop("status", None)
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            previous["metadata"].pop(key, None)
        cluster.kubectl("replace", "-f", "-", input=json.dumps(previous))
    else:
        cluster.kubectl("delete", "crd", HELMAPP_CRD, "--wait=true")


@pytest.fixture(scope="module")
def fleet_namespace(fleet_crd: ControlPlane) -> str:
    return _namespace(fleet_crd, "api-fleet")


@pytest.mark.parametrize("manifest", VALID, ids=lambda m: m.id)
def test_fleets_crd_accepts_the_valid_corpus(fleet_crd: ControlPlane, fleet_namespace: str, manifest: Any) -> None:
    if manifest.fleet_prunes:
        # Server-side apply refuses, by name, a field v0.12's schema lacks (whatever --validate says)...
        for validate in ("--validate=strict", "--validate=false"):
            refused = _apply(fleet_crd, fleet_namespace, manifest.text, validate)
            assert refused.returncode != 0
            assert all(_field_named(refused.stderr, path) for path in manifest.fleet_prunes), refused.stderr
            assert "field not declared in schema" in refused.stderr
        # ...while a plain create without field validation is accepted with the field pruned.
        out = _create_unvalidated(fleet_crd, fleet_namespace, manifest.text)
    else:
        out = _apply(fleet_crd, fleet_namespace, manifest.text)
    assert out.returncode == 0, out.stderr
    live = _get(fleet_crd, "helmapp", fleet_namespace, manifest.name)
    expected = manifest.doc
    for path in manifest.fleet_prunes:
        expected = corpus.without(expected, path)
    assert live["spec"] == expected["spec"]
    assert _user_metadata(live) == _user_metadata(manifest.doc)
    assert HelmApp.model_validate(live).to_dict()["spec"] == expected["spec"]


@pytest.mark.parametrize("manifest", SEMANTIC, ids=lambda m: m.id)
def test_fleets_crd_accepts_the_semantic_corpus(fleet_crd: ControlPlane, fleet_namespace: str, manifest: Any) -> None:
    out = _apply(fleet_crd, fleet_namespace, manifest.text)
    assert out.returncode == 0, out.stderr
    assert _get(fleet_crd, "helmapp", fleet_namespace, manifest.name)["spec"] == manifest.doc["spec"]


def test_fleets_crd_rejects_the_invalid_corpus_except_fields_it_lacks(
    fleet_crd: ControlPlane, fleet_namespace: str
) -> None:
    fleet_paths = {path for path, _ in _fleet_schema_paths()}
    accepted = []
    for manifest in INVALID:
        # Without field validation, so "accepted" means Fleet's schema keeps or prunes it.
        out = _create_unvalidated(fleet_crd, fleet_namespace, manifest.text)
        if out.returncode == 0:
            accepted.append(manifest.id)
            # Ours may only be stricter on fields Fleet v0.12 does not have at all.
            bare = "." + re.sub(r"\[[^\]]*\]", "[]", manifest.expect)
            assert bare not in fleet_paths, manifest.id
        else:
            assert _field_named(out.stderr, manifest.expect), out.stderr
    assert accepted, "the pollingInterval cases are pruned by Fleet's CRD"
    assert all("polling-interval" in name for name in accepted), accepted


def test_polling_interval_annotation_survives_fleets_crd(fleet_crd: ControlPlane, fleet_namespace: str) -> None:
    from helmops.api.annotations import POLLING_INTERVAL, polling_interval_seconds

    manifest = next(m for m in VALID if m.id == "20-minimal")
    doc = {**manifest.doc, "metadata": {"name": "annotated", "annotations": {POLLING_INTERVAL: "10m"}}}
    assert _apply(fleet_crd, fleet_namespace, yaml.safe_dump(doc)).returncode == 0
    app = HelmApp.model_validate(_get(fleet_crd, "helmapp", fleet_namespace, "annotated"))
    assert polling_interval_seconds(app) == 600


def _fleet_schema_paths() -> list[tuple[str, Any]]:
    from helmops.api.schema_check import crd_schema, walk

    return list(walk(crd_schema(yaml.safe_load(FLEET_HELMAPP_CRD.read_text()))))
