"""The CLI's offline parts, run in-process: validate, render --values-only, and the pure diff/status/promote
helpers. Nothing here reaches a network or a cluster."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.cli.diff import manifest_diff, values_changes
from helmops.cli.main import main
from helmops.cli.promote import not_ready_reasons
from helmops.cli.status import cluster_rows, state_and_message

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# --- validate ---------------------------------------------------------------------------------------------


def test_validate_every_valid_corpus_file_passes(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (MANIFESTS / "valid").glob("*.yaml"))
    args = [a for f in files for a in ("-f", f)]
    code, out, _ = run(capsys, "validate", *args, "-o", "json")
    report = json.loads(out)
    assert code == 0, out
    assert report["valid"] is True and report["errors"] == 0 and report["documents"] == len(files)


@pytest.mark.parametrize("path", sorted((MANIFESTS / "invalid").glob("*.yaml")), ids=lambda p: p.stem)
def test_validate_each_invalid_corpus_file_fails_with_a_located_problem(
    capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    code, out, _ = run(capsys, "validate", "-f", str(path))
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{path}[0] HelmApp ") and ": error: spec." in first


def test_validate_stdin_multi_document_with_index_path_and_warnings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = textwrap.dedent("""\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: good, namespace: apps}
        spec:
          helm: {repo: https://charts.example.com, chart: hello, version: 1.0.0}
          kustomize: {dir: other}
        ---
        # an empty document still counts in the index
        ---
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: bad}
        spec:
          helm: {chart: https://example.com/x.tgz, version: 1.0.0}
          targets:
          - clusterSelector: {matchExpressions: [{key: a, operator: Near}]}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: cm}
        """)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code, out, _ = run(capsys, "validate", "-f", "-", "-o", "json")
    report = json.loads(out)
    assert code == 1
    assert report["documents"] == 3 and report["errors"] == 2
    located = {(p["document"], p["path"], p["severity"]) for p in report["problems"]}
    assert (2, "spec.helm.chart", "error") in located
    assert (2, "spec.targets[0].clusterSelector.matchExpressions[0]", "error") in located
    assert (0, "spec.kustomize", "warning") in located
    assert (3, "kind", "warning") in located
    assert all(p["file"] == "<stdin>" for p in report["problems"])


def test_validate_warnings_only_exit_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "w.yaml",
        """\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: w}
        spec:
          helm: {repo: https://charts.example.com, chart: hello, waitForJobs: true}
        """,
    )
    code, out, _ = run(capsys, "validate", "-f", path)
    assert code == 0
    assert f"{path}[0] HelmApp w: warning: spec.helm.waitForJobs:" in out
    assert "0 error(s), 1 warning(s)" in out


def test_validate_bad_yaml_and_missing_file_are_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "kind: HelmApp\nmetadata: {name: [\n")
    code, out, _ = run(capsys, "validate", "-f", bad, "-f", str(tmp_path / "nope.yaml"), "-o", "yaml")
    report = yaml.safe_load(out)
    assert code == 1 and report["errors"] == 2
    assert "not valid YAML (line" in report["problems"][0]["message"]
    assert "cannot read" in report["problems"][1]["message"]


def test_validate_wrong_api_version_and_missing_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "v.yaml",
        """\
        apiVersion: fleet.cattle.io/v1beta1
        kind: HelmApp
        spec: {helm: {repo: https://r.example.com, chart: c}}
        """,
    )
    code, out, _ = run(capsys, "validate", "-f", path)
    assert code == 1
    assert ": error: apiVersion: must be fleet.cattle.io/v1alpha1" in out
    assert ": error: metadata.name: required" in out


# --- render --values-only (no chart source is contacted: the repo host does not even resolve) --------------

APP = """\
    apiVersion: fleet.cattle.io/v1alpha1
    kind: HelmApp
    metadata: {name: web, namespace: fleet-default}
    spec:
      defaultNamespace: web
      helm:
        repo: https://charts.invalid/
        chart: hello
        version: "VERSION"
        values:
          message: hi ${ .ClusterName }
          replicas: ${ get .ClusterValues "replicas" | default 1 }
      targets:
      - name: canary
        clusterSelector: {matchLabels: {canary: "true"}}
        helm:
          version: 0.2.0
          values: {tier: canary}
      - name: skip
        clusterName: legacy
        doNotDeploy: true
      - name: rest
        clusterSelector: {}
    """


def app(tmp_path: Path, version: str = "0.1.0") -> str:
    return write(tmp_path, "app.yaml", APP.replace("VERSION", version))


def test_render_values_only_with_one_cluster_from_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys, "render", "-f", app(tmp_path), "--values-only", "--cluster", "c1",
        "--cluster-labels", "canary=true", "env=x", "--cluster-values", "replicas=3", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    (entry,) = json.loads(out)["clusters"]
    assert entry["cluster"] == "fleet-default/c1" and entry["target"] == "canary"
    assert entry["version"] == "0.2.0" and entry["digest"] is None and entry["chart"] == "hello"
    assert entry["values"] == {"message": "hi c1", "replicas": 3, "tier": "canary"}
    assert entry["valuesDigest"].startswith("sha256:")
    assert [s["kind"] for s in entry["sources"]] == ["values", "target"]
    assert entry["release"] == {"name": "web", "namespace": "web"}


def test_render_values_only_constraint_is_unresolved_and_targets_match_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clusters = write(
        tmp_path,
        "clusters.yaml",
        """\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: Cluster
        metadata: {name: a, namespace: fleet-default, labels: {env: dev}}
        ---
        apiVersion: fleet.cattle.io/v1alpha1
        kind: Cluster
        metadata: {name: legacy, namespace: fleet-default, labels: {env: dev}}
        ---
        apiVersion: fleet.cattle.io/v1alpha1
        kind: Cluster
        metadata: {name: b, namespace: fleet-default, labels: {canary: "true"}}
        spec: {templateValues: {replicas: 5}}
        """,
    )
    code, out, err = run(
        capsys, "render", "-f", app(tmp_path, "^0.1"), "--values-only", "--clusters-from", clusters, "-o", "yaml"
    )
    assert code == 0, err
    entries = {e["cluster"]: e for e in yaml.safe_load(out)["clusters"]}
    assert sorted(entries) == ["fleet-default/a", "fleet-default/b"]
    assert entries["fleet-default/a"]["version"] == "unresolved"
    assert entries["fleet-default/a"]["target"] == "rest"
    assert entries["fleet-default/b"]["version"] == "0.2.0"
    assert entries["fleet-default/b"]["values"]["replicas"] == 5


def test_render_values_only_text_output_and_template_error_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "render", "-f", app(tmp_path), "--values-only")
    assert code == 0
    assert out.startswith("# helmops: cluster fleet-default/local (target default)")
    assert "message: hi local" in out
    broken = write(
        tmp_path,
        "broken.yaml",
        """\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: broken, namespace: ns}
        spec:
          helm:
            repo: https://charts.invalid/
            chart: hello
            values: {x: "${ .ClusterValues.missing }"}
        """,
    )
    code, out, err = run(capsys, "render", "-f", broken, "--values-only", "-o", "json")
    (entry,) = json.loads(out)["clusters"]
    assert code == 1
    assert entry["error"].startswith("cluster local in namespace ns: ")
    assert "cluster local in namespace ns" in err


def test_render_refuses_an_invalid_helmapp_and_conflicting_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "render", "-f", str(MANIFESTS / "invalid" / "12-timeout-string.yaml"), "--values-only")
    assert code == 1 and "spec.helm.timeoutSeconds" in err
    code, _, err = run(capsys, "render", "-f", app(tmp_path), "--values-only", "--cluster-labels", "a=b")
    assert code == 1 and "need --cluster NAME" in err


# --- pure helpers of diff / status / promote -------------------------------------------------------------


def test_values_changes_added_removed_changed_and_secret_redaction() -> None:
    live = {"a": 1, "nested": {"keep": True, "old": "x"}, "password": "hunter2"}
    desired = {"a": 2, "nested": {"keep": True, "new": [1]}, "password": "s3cret"}
    changes = values_changes(live, desired, [("password",)])
    assert changes == [
        {"path": "a", "op": "~", "from": 1, "to": 2},
        {"path": "nested.new", "op": "+", "to": [1]},
        {"path": "nested.old", "op": "-", "from": "x"},
        {"path": "password", "op": "~", "from": "***", "to": "***"},
    ]
    assert values_changes(desired, desired) == []


def test_manifest_diff_ignores_order_and_masks_secret_data() -> None:
    cm = "kind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
    a = f"---\n{cm}---\nkind: Secret\nmetadata: {{name: s}}\ndata: {{p: MTIz}}\n"
    b = f"---\nkind: Secret\nmetadata: {{name: s}}\ndata: {{p: NDU2}}\n---\n{cm}"
    diff = manifest_diff(a, b)
    assert "MTIz" not in diff and "NDU2" not in diff
    assert "+  p: '*** (changed)'" in diff
    assert manifest_diff(a, a) == ""
    assert manifest_diff(a, a.replace("k: v", "k: w")).count("\n-") == 1


def _obj(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "n", "generation": generation}, "status": status or {}}


READY = {
    "version": "1.2.0",
    "readyClusters": 2,
    "desiredReadyClusters": 2,
    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Accepted", "status": "True"}],
}


def test_not_ready_reasons() -> None:
    assert not_ready_reasons(_obj(READY)) == []
    assert not_ready_reasons(_obj(READY), "1.2.0") == []
    assert not_ready_reasons(_obj(READY), "1.3.0") == ["status.version is 1.2.0, not 1.3.0"]
    partial = {**READY, "readyClusters": 1}
    assert not_ready_reasons(_obj(partial)) == ["1/2 clusters ready"]
    stale = {**READY, "observedGeneration": 1}
    assert "generation" in not_ready_reasons(_obj(stale, generation=2))[0]
    assert len(not_ready_reasons(_obj(None))) == 3


def test_state_and_message_and_cluster_rows() -> None:
    assert state_and_message(_obj(READY)) == ("Ready", "")
    failing = {
        "display": {"state": "ErrApplied", "message": "cluster local in namespace n: boom"},
        "conditions": [{"type": "Ready", "status": "False", "message": "m"}],
    }
    assert state_and_message(_obj(failing)) == ("ErrApplied", "cluster local in namespace n: boom")
    refused = {"conditions": [{"type": "Accepted", "status": "False", "message": "bad chart"}]}
    assert state_and_message(_obj(refused)) == ("NotAccepted", "bad chart")
    assert state_and_message(_obj(None)) == ("Pending", "")
    fleet = yaml.safe_load((MANIFESTS / "status" / "fleet-status.yaml").read_text())
    rows = cluster_rows(_obj(fleet))
    assert [(r["cluster"], r["state"]) for r in rows] == [("fleet-default/a", "Ready"), ("fleet-default/b", "NotReady")]
    assert rows[0]["resources"] == "1/1"
    assert cluster_rows(_obj(READY))[0]["cluster"] == "n/local"


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "render", "diff", "status", "promote"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "exit" in capsys.readouterr().out.lower()


def test_validate_a_directory_means_its_yaml_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "-f", str(MANIFESTS / "clusters"), "-o", "json")
    report = json.loads(out)
    assert code == 0 and report["documents"] == len(list((MANIFESTS / "clusters").glob("*.yaml")))


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal() -> None:
    from helmops.cli.common import Progress

    quiet = _Tty(False)
    p = Progress(quiet)
    p.step("resolving chart")
    p.done()
    assert quiet.getvalue() == ""
    tty = _Tty(True)
    p = Progress(tty)
    p.step("resolving a long chart name")
    p.step("short")
    p.done()
    text = tty.getvalue()
    assert text.startswith("\r… resolving a long chart name")
    assert "\r… short" in text and text.endswith("\r")


def test_render_reads_the_helmapp_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(APP.replace("VERSION", "1.2.3")))
    code, out, err = run(capsys, "render", "-f", "-", "--values-only", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["clusters"][0]["version"] == "1.2.3"


def test_render_cluster_flags_without_targets_render_for_that_cluster(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "plain.yaml",
        """\
        apiVersion: fleet.cattle.io/v1alpha1
        kind: HelmApp
        metadata: {name: plain, namespace: fleet-default}
        spec:
          helm: {repo: https://charts.invalid/, chart: hello, values: {where: "${ .ClusterName }"}}
        """,
    )
    code, out, err = run(capsys, "render", "-f", path, "--values-only", "--cluster", "edge-7", "-o", "json")
    (entry,) = json.loads(out)["clusters"]
    assert code == 0, err
    assert (entry["cluster"], entry["target"], entry["values"]) == (
        "fleet-default/edge-7",
        "default",
        {"where": "edge-7"},
    )
    code, out, err = run(
        capsys, "render", "-f", path, "--values-only", "--cluster", "x", "--cluster-namespace", "other"
    )
    assert code == 0 and out == "" and "targets none of the given clusters" in err
