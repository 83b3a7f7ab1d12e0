"""The generated CRDs: structural, committed copies up to date, and a superset of Fleet's."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.api import HelmAppSpec
from helmops.api.crd import CRD_NAMES, generate, generate_all, render, stale, structural_schema
from helmops.api.schema_check import crd_schema, structural_problems, superset_problems, walk
from helmops.api.spec import POLLING_INTERVAL_PATTERN
from support.tools import reference_dir

REPO = Path(__file__).parents[2]
REFERENCE = reference_dir()
FLEET = {
    "helmapps.fleet.cattle.io": "fleet-v0.12.0-helmapp-crd.yaml",
    "clusters.fleet.cattle.io": "fleet-v0.12.0-cluster-crd.yaml",
    "clustergroups.fleet.cattle.io": "fleet-v0.12.0-clustergroup-crd.yaml",
}


def fleet_crd(name: str) -> dict[str, Any]:
    path = REFERENCE / FLEET[name]
    if not path.is_file():
        pytest.skip(f"Fleet's reference CRD {path} is not available")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def crds() -> dict[str, dict[str, Any]]:
    return generate_all()


def test_generate_all_names(crds: dict[str, dict[str, Any]]) -> None:
    assert tuple(crds) == CRD_NAMES
    assert generate() == crds["helmapps.fleet.cattle.io"]
    for name, crd in crds.items():
        assert crd["metadata"]["name"] == name
        assert crd["spec"]["group"] == "fleet.cattle.io"
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]


@pytest.mark.parametrize("name", CRD_NAMES)
def test_committed_crds_match_the_models(name: str, crds: dict[str, dict[str, Any]]) -> None:
    path = REPO / "crds" / f"{name}.yaml"
    assert path.read_text(encoding="utf-8") == render(crds[name]), "run hack/gen-crds"
    assert yaml.safe_load(path.read_text()) == crds[name]


def test_nothing_is_stale() -> None:
    assert stale(REPO / "crds") == []


@pytest.mark.parametrize("name", CRD_NAMES)
def test_generated_schemas_are_structural(name: str, crds: dict[str, dict[str, Any]]) -> None:
    assert structural_problems(crd_schema(crds[name])) == []


@pytest.mark.parametrize("name", CRD_NAMES)
def test_superset_of_fleet(name: str, crds: dict[str, dict[str, Any]]) -> None:
    assert superset_problems(crd_schema(crds[name]), crd_schema(fleet_crd(name))) == []


def test_helmapp_crd_identity_matches_fleet(crds: dict[str, dict[str, Any]]) -> None:
    ours, fleet = crds["helmapps.fleet.cattle.io"]["spec"], fleet_crd("helmapps.fleet.cattle.io")["spec"]
    assert ours["names"] == fleet["names"]
    assert ours["scope"] == fleet["scope"] == "Namespaced"
    version, fleet_version = ours["versions"][0], fleet["versions"][0]
    assert version["subresources"] == fleet_version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"][:-1] == fleet_version["additionalPrinterColumns"]
    assert version["additionalPrinterColumns"][-1] == {
        "jsonPath": ".metadata.creationTimestamp",
        "name": "Age",
        "type": "date",
    }
    for name in ("clusters.fleet.cattle.io", "clustergroups.fleet.cattle.io"):
        assert crds[name]["spec"]["names"] == fleet_crd(name)["spec"]["names"]


def test_only_fields_fleet_lacks_carry_cel_rules(crds: dict[str, dict[str, Any]]) -> None:
    nodes = dict(walk(crd_schema(crds["helmapps.fleet.cattle.io"])))
    fleet = dict(walk(crd_schema(fleet_crd("helmapps.fleet.cattle.io"))))
    with_rules = sorted(path for path, node in nodes.items() if node.get("x-kubernetes-validations"))
    assert with_rules == [".spec.pollingInterval"]
    assert ".spec.pollingInterval" not in fleet
    extra = sorted(set(nodes) - set(fleet))
    assert extra == [".spec.pollingInterval", ".status.lastPollingTriggered", ".status.observedGeneration"]


def test_schema_details_fleet_relies_on(crds: dict[str, dict[str, Any]]) -> None:
    nodes = dict(walk(crd_schema(crds["helmapps.fleet.cattle.io"])))
    assert nodes[".spec.helm.values"] == {
        "description": nodes[".spec.helm.values"]["description"],
        "nullable": True,
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert nodes[".spec.helm.templateValues"]["additionalProperties"] == {"type": "string"}
    assert nodes[".spec.rolloutStrategy.maxUnavailable"]["x-kubernetes-int-or-string"] is True
    assert "type" not in nodes[".spec.rolloutStrategy.maxUnavailable"]
    assert nodes[".spec.helm.releaseName"]["maxLength"] == 53
    assert nodes[".spec.targets[].clusterSelector.matchExpressions[]"]["required"] == ["key", "operator"]
    assert nodes[".spec.forceSyncGeneration"]["format"] == "int64"
    assert nodes[".status"]["x-kubernetes-preserve-unknown-fields"] is True
    assert not any("default" in node for node in nodes.values())


def test_spec_fields_are_documented(crds: dict[str, dict[str, Any]]) -> None:
    # `kubectl explain` shows these; every field we define says what it does.
    undocumented = [
        path
        for path, node in walk(crd_schema(crds["helmapps.fleet.cattle.io"]))
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undocumented == []


def test_cel_pattern_agrees_with_the_model() -> None:
    # The CEL rule's regex (RE2) and the model validator must accept the same strings.
    pattern = re.compile(POLLING_INTERVAL_PATTERN)
    for text in ["5m", "1h30m", "1.5s", ".5s", "1.s", "300ms", "1us", "1\u00b5s", "2562047h", "1h1h"]:
        assert pattern.match(text), text
        HelmAppSpec.model_validate({"pollingInterval": text})
    for text in ["1d", "5", "-5m", "m", ".s", "1 s", ""]:
        assert not pattern.match(text), text


# -- the checkers themselves catch what they should ---------------------------------------------


def test_structural_checker_finds_problems() -> None:
    bad = {
        "type": "object",
        "properties": {
            "ref": {"$ref": "#/$defs/X"},
            "nullish": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "constant": {"type": "string", "const": "a"},
            "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            "untyped": {"description": "no type"},
            "defaulted": {"type": "string", "default": "x"},
            "empty": {"type": "object"},
            "list": {"type": "array"},
        },
    }
    found = "\n".join(structural_problems(bad))
    for words in (
        ".ref: has '$ref'",
        ".nullish: anyOf with type null",
        ".constant: has 'const'",
        ".both: additionalProperties next to properties",
        ".untyped: no type",
        ".defaulted: has a default",
        ".empty: object with no fields",
        ".list: array without items",
    ):
        assert words in found


def test_pydantic_output_is_not_structural_until_converted() -> None:
    raw = HelmAppSpec.model_json_schema(by_alias=True)
    raw.pop("$defs")
    assert structural_problems(raw)
    assert structural_problems(structural_schema(HelmAppSpec)) == []


def test_superset_checker_finds_stricter_schemas(crds: dict[str, dict[str, Any]]) -> None:
    fleet = crd_schema(fleet_crd("helmapps.fleet.cattle.io"))
    ours = copy.deepcopy(crd_schema(crds["helmapps.fleet.cattle.io"]))
    spec = ours["properties"]["spec"]
    del spec["properties"]["kustomize"]
    spec["properties"]["paused"]["type"] = "string"
    spec["properties"]["helm"]["properties"]["releaseName"]["maxLength"] = 40
    spec["properties"]["helm"]["properties"]["chart"]["pattern"] = "^[a-z]+$"
    spec["properties"]["helm"]["properties"]["version"]["nullable"] = False
    spec["properties"]["helm"]["properties"]["repo"]["enum"] = ["x"]
    spec["properties"]["helm"]["required"] = ["chart"]
    spec["properties"]["namespace"]["x-kubernetes-validations"] = [{"rule": "self != ''"}]
    spec["properties"]["targets"]["x-kubernetes-list-type"] = "map"
    found = "\n".join(superset_problems(ours, fleet))
    for words in (
        ".spec.kustomize: missing",
        ".spec.paused: type string",
        ".spec.helm.releaseName: maxLength 40",
        ".spec.helm.chart: pattern",
        ".spec.helm.version: not nullable",
        ".spec.helm.repo: enum",
        ".spec.helm: requires ['chart']",
        ".spec.namespace: CEL rule",
        ".spec.targets: x-kubernetes-list-type",
    ):
        assert words in found


def test_superset_checker_accepts_preserved_subtrees() -> None:
    fleet = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    ours = {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    assert superset_problems(ours, fleet) == []
    ours["properties"]["spec"].pop("x-kubernetes-preserve-unknown-fields")
    assert superset_problems(ours, fleet) == [".spec.a: missing (Fleet's CRD has it)"]
