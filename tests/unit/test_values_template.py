"""The `${ }` engine against the template corpus (tests/templates/corpus.yaml) and its own edge cases."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from helmops.values import FORBIDDEN_FUNCTIONS, TemplateError, render_template
from helmops.values.template_functions import ALLOWED_FUNCTIONS

_spec = importlib.util.spec_from_file_location(
    "values_corpus", Path(__file__).parents[1] / "templates" / "values_corpus.py"
)
assert _spec and _spec.loader
corpus = importlib.util.module_from_spec(_spec)
sys.modules["values_corpus"] = corpus
_spec.loader.exec_module(corpus)

CASES = corpus.load_cases()


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert sum(1 for c in CASES if c.error is None) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(case) -> None:  # type: ignore[no-untyped-def]
    if case.error is not None:
        with pytest.raises(TemplateError) as info:
            render_template(case.fleet_form, case.context)
        assert case.error in str(info.value)
        return
    out = render_template(case.fleet_form, case.context)
    if case.expected is not None:
        assert out == case.expected


def test_fleet_backtick_escape_verbatim() -> None:
    # exactly as Fleet documents it, no spaces inside the delimiters
    assert render_template("cmd: ${`${PWD}`}/bin", {}) == "cmd: ${PWD}/bin"


def test_errors_carry_line_and_column() -> None:
    with pytest.raises(TemplateError) as info:
        render_template("a: 1\nb: ${ .ClusterLabels.tier }\n", {"ClusterLabels": {}})
    err = info.value
    assert (err.line, err.column) == (2, 7)
    assert str(err).startswith("template: values:2:7:")
    with pytest.raises(TemplateError) as info:
        render_template("a: 1\n\n  ${ now }", {}, name="replicas")
    assert str(info.value).startswith("template: replicas:3:6:")
    assert "clock" in str(info.value)


@pytest.mark.parametrize("name", sorted(FORBIDDEN_FUNCTIONS))
def test_every_forbidden_function_is_rejected_by_name(name: str) -> None:
    assert name not in ALLOWED_FUNCTIONS or name == "call"
    with pytest.raises(TemplateError) as info:
        render_template("${ " + name + " }", {})
    assert f'"{name}"' in str(info.value) or f"'{name}'" in str(info.value)


def test_deterministic_functions_stay_available() -> None:
    for name in ("semverCompare", "toJson", "sha256sum", "derivePassword", "b64enc", "regexReplaceAll", "dig"):
        assert name in ALLOWED_FUNCTIONS


def test_raw_render_passes_data_through_unchanged_by_reference() -> None:
    data = {"ClusterLabels": {"env": "prod"}}
    # Sprig's set mutates in place; the context builder hands templates copies (see ClusterContext).
    render_template('${ $_ := set .ClusterLabels "x" "y" }', data)
    assert data["ClusterLabels"]["x"] == "y"  # raw render_template: caller's responsibility


@pytest.mark.parametrize(
    "source",
    [
        '${ indent 100000000 "x" }',
        '${ printf "%0999999999d" 1 }',
        '${ $s := "a" }${ range until 60 }${ $s = cat $s $s }${ end }',
        '${ $d := dict }${ range until 60 }${ $d = dict "a" $d "b" $d }${ end }${ toJson $d }',
        '${ replace "" "xxxxxxxxxx" (repeat 200000 "y") }',
        '${ range until 100 }${ range until 100 }${ range until 100 }x${ end }${ end }${ end }',
    ],
)
def test_budget_stops_runaway_templates(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_template(source, {})
    assert "budget exceeded" in str(info.value)
