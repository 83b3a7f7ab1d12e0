"""helmops.promotion.plan and .settings: the plan an approval approves (pure) and the annotations."""

from __future__ import annotations

import json

import pytest

from helmops.promotion import plan as plans
from helmops.promotion.settings import (
    APPROVAL_SELECTOR,
    MAX_TEXT,
    REQUIRE_APPROVAL,
    SettingsError,
    approval,
    plan_hash_text,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
OLD = CM + "data: {x: '1'}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
NEW = CM + "data: {x: '2'}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n"


def entry(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "cluster": "local", "release": "apps/rel", "action": "upgrade", "chart": "demo", "version_from": "1.0.0",
        "version_to": "1.1.0", "fingerprint": "fp1", "values": {"added": [], "changed": ["a"], "removed": []},
        "objects": {"added": [], "changed": [], "removed": []},
    }  # fmt: skip
    base.update(kw)
    return plans.cluster_plan(**base)  # type: ignore[arg-type]


def test_values_changes_list_keys_never_values_and_mask_secret_keys() -> None:
    old = {"a": 1, "b": {"c": "x"}, "gone": True, "s": {"tok-secret-key": "v"}}
    new = {"a": 2, "b": {"c": "x", "d": "hunter22"}, "s": {"tok-secret-key": "w"}}
    out = plans.values_changes(old, new, secrets=("hunter22", "tok-secret-key"))
    assert out == {"added": ["b.d"], "changed": ["a", "s.***"], "removed": ["gone"]}
    assert "hunter22" not in json.dumps(out)


def test_values_changes_are_capped() -> None:
    out = plans.values_changes({}, {f"k{i:03}": i for i in range(plans.MAX_KEYS + 7)})
    assert len(out["added"]) == plans.MAX_KEYS + 1 and out["added"][-1] == "... and 7 more"


def test_manifest_changes_by_object() -> None:
    out = plans.manifest_changes(OLD, NEW, "apps")
    assert out == {
        "added": ["service.v1 apps/b"],
        "changed": ["configmap.v1 apps/a"],
        "removed": ["secret.v1 apps/s"],
    }
    assert plans.manifest_changes(OLD, None, "apps") is None


def test_hash_is_stable_and_changes_with_anything_that_matters() -> None:
    assert entry()["hash"] == entry()["hash"]
    for change in ({"version_to": "1.2.0"}, {"fingerprint": "fp2"}, {"chart": "other"}, {"cluster": "c2"}):
        assert entry(**change)["hash"] != entry()["hash"]


def test_plan_hash_and_applied_entries() -> None:
    a, b = entry(cluster="a"), entry(cluster="b")
    p = plans.with_entry(plans.with_entry(plans.load(None), a), b)
    assert p["planHash"] == plans.plan_hash({"a": a, "b": b})
    assert plans.load(plans.dumps(p)) == p
    p["clusters"]["a"]["applied"] = True
    p2 = plans.with_entry(p, entry(cluster="b", fingerprint="fp9"))
    assert list(p2["clusters"]) == ["b"] and p2["planHash"] != p["planHash"]
    assert "b: upgrade demo 1.0.0 -> 1.1.0" in plans.plan_summary(p2)


@pytest.mark.parametrize("text", ["", "garbage", "[]", '{"clusters": 3}', "x" * (plans.MAX_PLAN_BYTES * 3)])
def test_garbage_plan_annotation_is_an_empty_plan(text: str) -> None:
    assert plans.load(text) == {"planHash": "", "clusters": {}}


def test_big_plans_are_trimmed_but_keep_their_hash() -> None:
    many = {f"k{i}" * 20: i for i in range(plans.MAX_KEYS)}
    p = plans.load(None)
    for i in range(60):
        p = plans.with_entry(p, entry(cluster=f"c{i}", values=plans.values_changes({}, many)))
    text = plans.dumps(p)
    assert len(text) <= plans.MAX_PLAN_BYTES * 2
    assert plans.load(text)["planHash"] == p["planHash"]


def test_approval_settings() -> None:
    assert not approval({}).required
    on = approval({REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: "matchLabels: {env: prod}"})
    assert on.applies_to({"env": "prod"}) and not on.applies_to({"env": "dev"})
    assert approval({REQUIRE_APPROVAL: "true"}).applies_to({})
    for bad in (
        {REQUIRE_APPROVAL: "yes"},
        {REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: "[1, 2]"},
        {REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: '{"matchExpressions": [{"key": "a", "operator": "Near"}]}'},
        {REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: "{" * 10},
        {REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: "a" * (MAX_TEXT + 1)},
    ):
        with pytest.raises(SettingsError):
            approval(bad)


def test_plan_hash_text_ignores_garbage() -> None:
    assert plan_hash_text({"k": " abc123 "}, "k") == "abc123"
    assert plan_hash_text({"k": "a b"}, "k") == "" and plan_hash_text({"k": "a" * 65}, "k") == ""
