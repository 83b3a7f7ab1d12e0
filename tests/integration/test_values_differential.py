"""Differential test: every corpus template that should render is rendered by helmops (`${ }`) and by the real
Go engine inside the helm binary (`{{ }}`), and the outputs must be identical.

All cases go into one throwaway chart (one template file per case) so helm runs once. Each case's text
becomes a named template; a ConfigMap carries `include "<case>" .Values.<case> | toJson`, so `.` inside the
case is its context in both engines and the output survives YAML untouched.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helmops.values import render_template

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location(
    "values_corpus", Path(__file__).parents[1] / "templates" / "values_corpus.py"
)
assert _spec and _spec.loader
corpus = importlib.util.module_from_spec(_spec)
sys.modules["values_corpus"] = corpus
_spec.loader.exec_module(corpus)

HELM_CASES = [c for c in corpus.load_cases() if c.helm and c.error is None]


def _build_chart(root: Path) -> tuple[Path, Path]:
    chart = root / "differential"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: differential\nversion: 0.1.0\n")
    values = {}
    for index, case in enumerate(HELM_CASES):
        key = f"case{index:03d}"
        values[key] = case.context
        body = (
            f'{{{{- define "{key}" }}}}{case.helm_form}{{{{ end -}}}}\n'
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            f"  name: {key}\n"
            f'data:\n  out: {{{{ include "{key}" .Values.{key} | toJson }}}}\n'
        )
        (chart / "templates" / f"{key}.yaml").write_text(body)
    values_file = root / "ctx.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return chart, values_file


@pytest.fixture(scope="module")
def helm_outputs(tools, tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from support.charts import helm_env

    root = tmp_path_factory.mktemp("values-differential")
    chart, values_file = _build_chart(root)
    proc = subprocess.run(
        [str(tools.helm), "template", "diff", str(chart), "--values", str(values_file)],
        capture_output=True,
        text=True,
        env=helm_env(root / "helm-home"),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    outputs: dict[str, str] = {}
    for doc in yaml.safe_load_all(proc.stdout):
        if doc and doc.get("kind") == "ConfigMap":
            outputs[doc["metadata"]["name"]] = json.loads(json.dumps(doc["data"]["out"]))
    return outputs


def test_enough_cases_compared() -> None:
    assert len(HELM_CASES) >= 40


@pytest.mark.parametrize("index", range(len(HELM_CASES)), ids=[c.name for c in HELM_CASES])
def test_same_output_as_go(index: int, helm_outputs: dict[str, str]) -> None:
    case = HELM_CASES[index]
    key = f"case{index:03d}"
    assert key in helm_outputs, f"helm rendered no output for {case.name}"
    ours = render_template(case.fleet_form, case.context)
    assert ours == helm_outputs[key]
    if case.expected is not None:
        assert helm_outputs[key] == case.expected, "the corpus expectation disagrees with Go"
