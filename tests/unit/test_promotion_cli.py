"""helmops plan / approve (helmops.cli.approve) offline: the view of a stored plan, and validate's checks of the
safe-promotion annotations."""

from __future__ import annotations

import json

import pytest

from helmops.cli.approve import plan_view, print_plan
from helmops.cli.validate import check_document
from helmops.promotion import plan as plans
from helmops.promotion.keys import APPROVED_PLAN, PLAN, REQUIRE_APPROVAL, WINDOWS


def obj(annotations: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"namespace": "team", "name": "web", "annotations": annotations}}


def stored() -> dict[str, object]:
    entry = plans.cluster_plan(
        cluster="team/prod", release="apps/web", action="upgrade", chart="hello", version_from="0.1.0",
        version_to="0.2.0", fingerprint="fp", values={"added": ["a.b"], "changed": [], "removed": []},
        objects={"added": [], "changed": ["configmap.v1 apps/web-hello"], "removed": []},
    )  # fmt: skip
    return plans.with_entry(plans.load(None), entry)


def test_plan_view_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    p = stored()
    view = plan_view(obj({REQUIRE_APPROVAL: "true", PLAN: plans.dumps(p)}))
    assert view["planHash"] == p["planHash"] and not view["approved"] and view["requireApproval"]
    assert json.loads(json.dumps(view))["clusters"][0]["to"] == "0.2.0"
    print_plan(view)
    out = capsys.readouterr().out
    assert f"plan {p['planHash']} (awaiting approval)" in out
    assert "chart hello 0.1.0 -> 0.2.0" in out and "value + a.b" in out and "object ~ configmap.v1" in out
    assert f"helmops approve team/web --plan {p['planHash']}" in out
    approved = plan_view(obj({REQUIRE_APPROVAL: "true", PLAN: plans.dumps(p), APPROVED_PLAN: str(p["planHash"])}))
    assert approved["approved"]


def test_no_plan(capsys: pytest.CaptureFixture[str]) -> None:
    print_plan(plan_view(obj({})))
    assert "no plan awaits approval" in capsys.readouterr().out


def test_validate_reports_bad_promotion_annotations() -> None:
    doc = {
        "apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp",
        "metadata": {"name": "w", "namespace": "team", "annotations": {WINDOWS: "[{}]"}},
        "spec": {"helm": {"chart": "oci://example.com/c"}},
    }  # fmt: skip
    _, _, found = check_document(doc)
    assert any(sev == "error" and WINDOWS in where for sev, where, _ in found)
