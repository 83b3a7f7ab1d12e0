"""Unknown fields (issue 17 item 4): ``helmops validate`` names misspelled keys with the nearest known one;
the controller names keys the API server pruned, from the kubectl last-applied annotation (bounded); and
validation of the rollout fields themselves."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helmops.api.spec import HelmAppSpec
from helmops.api.unknown import LAST_APPLIED, MAX_LAST_APPLIED_BYTES, MAX_REPORTED, pruned_fields, unknown_fields
from helmops.api.validate import validate
from helmops.cli.main import main
from tests.unit.test_clusters_reconcile import KEY, _setup

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"

DOC: dict[str, Any] = {
    "apiVersion": "fleet.cattle.io/v1alpha1",
    "kind": "HelmApp",
    "metadata": {"name": "web", "namespace": "apps"},
    "spec": {
        "helm": {"chart": "hello", "repo": "https://charts.example.com", "disablePreprocess": True,
                 "valuesfrom": [], "values": {"anyKey": {"deep": 1}}},
        "targets": [{"clusterName": "a", "hlem": {}}],
        "rolloutStrategy": {"partitions": [{"name": "p", "clusterName": "a", "maxUnavailble": 1}]},
        "dependsOn": [{"selector": {"matchLabel": {"a": "b"}}}],
    },
}  # fmt: skip


def test_unknown_fields_with_nearest_known_field() -> None:
    got = {p.path: p.message for p in unknown_fields(DOC)}
    assert got == {
        "spec.helm.disablePreprocess": "unknown field: the API server drops it; did you mean 'disablePreProcess'?",
        "spec.helm.valuesfrom": "unknown field: the API server drops it; did you mean 'valuesFrom'?",
        "spec.targets[0].hlem": "unknown field: the API server drops it; did you mean 'helm'?",
        "spec.rolloutStrategy.partitions[0].maxUnavailble": (
            "unknown field: the API server drops it; did you mean 'maxUnavailable'?"
        ),
        "spec.dependsOn[0].selector.matchLabel": "unknown field: the API server drops it; did you mean 'matchLabels'?",
    }
    assert all(p.severity == "warning" for p in unknown_fields(DOC))
    assert unknown_fields({"spec": {"zzzzzz": 1}})[0].message == "unknown field: the API server drops it"


def test_every_valid_corpus_manifest_has_no_unknown_field() -> None:
    import yaml

    for path in sorted((MANIFESTS / "valid").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "HelmApp":
                assert unknown_fields(doc) == [], path


def test_unknown_fields_are_bounded() -> None:
    many = {"spec": {"helm": {f"k{i}": 1 for i in range(500)}}}
    assert len(unknown_fields(many)) == MAX_REPORTED


def test_validate_cli_reports_misspelled_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(json.dumps(DOC))
    code = main(["validate", "-f", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out  # warnings only
    assert "spec.helm.disablePreprocess: unknown field: the API server drops it; did you mean 'disablePreProcess'?" in (
        out
    )


def applied(doc: dict[str, Any], live_spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"annotations": {LAST_APPLIED: json.dumps(doc)}}, "spec": live_spec}


def test_pruned_fields_from_the_last_applied_annotation() -> None:
    live = {"helm": {"chart": "hello", "values": {"anyKey": {"deep": 1}}}, "targets": [{"clusterName": "a"}]}
    found = pruned_fields(applied(DOC, live))
    assert "spec.helm.disablePreprocess (did you mean 'disablePreProcess'?)" in found
    assert "spec.targets[0].hlem (did you mean 'helm'?)" in found
    # a key the live object still has was not pruned (our CRD knows it)
    live["helm"]["valuesfrom"] = []
    assert "spec.helm.valuesfrom (did you mean 'valuesFrom'?)" not in pruned_fields(applied(DOC, live))


def test_pruned_fields_parse_is_bounded() -> None:
    assert pruned_fields({"metadata": {"annotations": {LAST_APPLIED: "x" * (MAX_LAST_APPLIED_BYTES + 1)}}}) == []
    assert pruned_fields({"metadata": {"annotations": {LAST_APPLIED: "{not json"}}}) == []
    assert pruned_fields({"metadata": {"annotations": {LAST_APPLIED: "[1, 2]"}}}) == []
    deep = '{"spec": ' * 5000 + "{}" + "}" * 5000  # parsed with the bounded parser: cut, never recursed
    assert pruned_fields({"metadata": {"annotations": {LAST_APPLIED: deep}}}) == ["spec.spec"]


async def test_controller_reports_pruned_fields_as_an_event() -> None:
    r, kube, _ = _setup([{"clusterName": "a"}])
    assert kube.obj is not None
    raw = json.loads(json.dumps(kube.obj))
    raw["spec"]["helm"]["disablePreprocess"] = True
    kube.obj["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(raw)}
    await r.reconcile(KEY)
    assert ("UnknownFields", "HelmApp spec: fields dropped by the API server (unknown to the HelmApp schema): "
            "spec.helm.disablePreprocess (did you mean 'disablePreProcess'?)") in kube.events  # fmt: skip


def spec(**kw: Any) -> HelmAppSpec:
    return HelmAppSpec.model_validate({"helm": {"chart": "hello", "repo": "https://charts.example.com"}, **kw})


def test_rollout_fields_are_validated() -> None:
    near = {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}
    problems = validate(
        spec(rolloutStrategy={"maxUnavailable": "abc", "partitions": [{"name": "p"}]}, dependsOn=[{}, near])
    )
    got = {(p.path, p.severity) for p in problems}
    assert ("spec.rolloutStrategy.maxUnavailable", "error") in got
    assert ("spec.rolloutStrategy.partitions[0]", "warning") in got
    assert ("spec.dependsOn[0]", "warning") in got
    assert ("spec.dependsOn[1].selector.matchExpressions[0]", "error") in got
    assert validate(spec(rolloutStrategy={"maxUnavailable": "0%", "autoPartitionSize": 0})) == []


def test_validate_text_names_file_and_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        textwrap.dedent("""\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: x, namespace: y}
        spec:
          helm: {chart: hello, repo: https://charts.example.com}
          rolloutStrategy: {maxUnavailable: "0"}
        """)
    )
    assert main(["validate", "-f", str(path)]) == 1
    assert "spec.rolloutStrategy.maxUnavailable" in capsys.readouterr().out
