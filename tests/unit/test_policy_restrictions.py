"""Operator policy (helmops.policy): Fleet's GitRepoRestriction semantics mapped onto HelmApps."""

from __future__ import annotations

from typing import Any

import pytest

from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.api.spec import HelmAppSpec
from helmops.policy import Policy, aggregate, evaluate, source_urls


def _restriction(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "GitRepoRestriction",
            "metadata": {"name": name, "namespace": "team"}, **fields}  # fmt: skip


def _app(**spec: Any) -> HelmApp:
    base = {"namespace": "apps", "helm": {"repo": "https://charts.example.com/stable", "chart": "web"}}
    return parse_helmapp({"metadata": {"name": "a", "namespace": "team"}, "spec": {**base, **spec}})


def test_no_restrictions_no_policy() -> None:
    assert aggregate([]) is None
    res = evaluate(_app(), None)
    assert res.ok and res.service_account is None and not res.defaulted


def test_aggregate_sorts_by_name_first_default_wins_lists_concatenate() -> None:
    pol = aggregate(
        [
            _restriction("zz", defaultServiceAccount="late", allowedServiceAccounts=["b"]),
            _restriction("aa", defaultServiceAccount="early", allowedServiceAccounts=["a"], allowedRepoPatterns=["x"]),
            _restriction("mm", allowedTargetNamespaces=["apps"]),
        ]
    )
    assert pol == Policy(("aa", "mm", "zz"), "early", ("a", "b"), ("apps",), ("x",))


def test_empty_default_does_not_shadow_a_later_one() -> None:
    pol = aggregate([_restriction("a", defaultServiceAccount=""), _restriction("b", defaultServiceAccount="sa")])
    assert pol is not None and pol.default_service_account == "sa"


def test_default_service_account_applies_only_when_none_is_set() -> None:
    pol = aggregate([_restriction("r", defaultServiceAccount="deployer")])
    res = evaluate(_app(), pol)
    assert res.ok and res.service_account == "deployer" and res.defaulted
    assert res.apply(_app()).spec.service_account == "deployer"
    own = evaluate(_app(serviceAccount="mine"), pol)
    assert own.service_account == "mine" and not own.defaulted
    assert own.apply(_app(serviceAccount="mine")).spec.service_account == "mine"


def test_default_is_not_checked_against_allowed_list_as_in_fleet() -> None:
    pol = aggregate([_restriction("r", defaultServiceAccount="deployer", allowedServiceAccounts=["other"])])
    assert evaluate(_app(), pol).ok
    assert evaluate(_app(serviceAccount="deployer"), pol).ok  # the default, written into the spec


def test_allowed_service_accounts() -> None:
    pol = aggregate([_restriction("r", allowedServiceAccounts=["deployer"])])
    assert evaluate(_app(serviceAccount="deployer"), pol).ok
    bad = evaluate(_app(serviceAccount="admin"), pol)
    assert not bad.ok and bad.violations[0].rule == "allowedServiceAccounts"
    assert "'admin'" in bad.message() and "GitRepoRestriction r" in bad.message()
    # a target's own serviceAccount is checked too
    target = evaluate(_app(serviceAccount="deployer", targets=[{"name": "t", "serviceAccount": "root"}]), pol)
    assert [v.rule for v in target.violations] == ["allowedServiceAccounts"] and "'root'" in target.message()


def test_allowed_target_namespaces_require_and_restrict_spec_namespace() -> None:
    pol = aggregate([_restriction("r", allowedTargetNamespaces=["apps", "web"])])
    assert evaluate(_app(namespace="web"), pol).ok
    denied = evaluate(_app(namespace="kube-system"), pol)
    assert [v.rule for v in denied.violations] == ["allowedTargetNamespaces"] and "'kube-system'" in denied.message()
    # Fleet: with allowedTargetNamespaces set, the target namespace must be set (defaultNamespace is not enough)
    unset = evaluate(_app(namespace="", defaultNamespace="apps"), pol)
    assert not unset.ok and "spec.namespace must be set" in unset.message()
    per_target = evaluate(_app(targets=[{"name": "t", "namespace": "other"}]), pol)
    assert not per_target.ok and "'other'" in per_target.message()


@pytest.mark.parametrize(
    ("patterns", "repo", "ok"),
    [
        (["https://charts.example.com/stable"], "https://charts.example.com/stable", True),  # verbatim
        (["charts\\.example\\.com"], "https://charts.example.com/stable", True),  # unanchored, as Go's MatchString
        (["^https://charts\\.example\\.com/"], "https://charts.example.com.evil.io/x", False),
        (["^https://charts\\.example\\.com/"], "https://charts.example.com/x", True),
        (["^oci://registry\\.local/"], "oci://registry.local/team", True),
        (["^oci://registry\\.local/"], "https://registry.local/team", False),
        (["nomatch", "example"], "https://charts.example.com/stable", True),  # any pattern of any restriction
    ],
)
def test_allowed_repo_patterns_are_regexes_or_verbatim(patterns: list[str], repo: str, ok: bool) -> None:
    pol = aggregate([_restriction("r", allowedRepoPatterns=patterns)])
    res = evaluate(_app(helm={"repo": repo, "chart": "web"}), pol)
    assert res.ok is ok
    if not ok:
        assert res.violations[0].rule == "allowedRepoPatterns" and repr(repo) in res.message()


def test_repo_pattern_checks_chart_url_without_repo_and_target_overrides() -> None:
    pol = aggregate([_restriction("r", allowedRepoPatterns=["^oci://ok/"])])
    assert evaluate(_app(helm={"chart": "oci://ok/web"}), pol).ok
    assert not evaluate(_app(helm={"chart": "oci://bad/web"}), pol).ok
    spec = {"helm": {"chart": "oci://ok/web"}, "targets": [{"name": "t", "helm": {"repo": "https://evil/"}}]}
    assert source_urls(HelmAppSpec.model_validate(spec)) == ["oci://ok/web", "https://evil/"]
    assert not evaluate(_app(**spec), pol).ok


def test_invalid_pattern_is_a_violation_naming_it() -> None:
    pol = aggregate([_restriction("r", allowedRepoPatterns=["(unclosed"])])
    res = evaluate(_app(), pol)
    assert not res.ok and "does not compile" in res.message()


def test_overlong_source_is_refused() -> None:
    pol = aggregate([_restriction("r", allowedRepoPatterns=[".*"])])
    assert not evaluate(_app(helm={"repo": "https://x/" + "a" * 5000, "chart": "c"}), pol).ok


def test_require_service_account() -> None:
    res = evaluate(_app(), None, require_service_account=True)
    assert [v.rule for v in res.violations] == ["requireServiceAccount"]
    assert evaluate(_app(serviceAccount="sa"), None, require_service_account=True).ok
    pol = aggregate([_restriction("r", defaultServiceAccount="deployer")])
    defaulted = evaluate(_app(), pol, require_service_account=True)
    assert defaulted.ok and defaulted.service_account == "deployer"


def test_non_string_fields_are_ignored() -> None:
    pol = aggregate([_restriction("r", allowedServiceAccounts=[1, None, "ok"], defaultServiceAccount=5)])
    assert pol is not None and pol.allowed_service_accounts == ("ok",) and pol.default_service_account == ""


# --- reading restrictions ------------------------------------------------------------------------------------
class _Custom:
    def __init__(self, status: int | None = None) -> None:
        self.calls, self.status = 0, status
        self.items: list[dict[str, Any]] = [_restriction("r", defaultServiceAccount="sa")]

    async def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str) -> Any:
        from kubernetes.aio.client.exceptions import ApiException

        assert (group, version, plural) == ("fleet.cattle.io", "v1alpha1", "gitreporestrictions")
        self.calls += 1
        if self.status is not None:
            raise ApiException(status=self.status, reason="x")
        return {"items": self.items}


async def test_source_caches_briefly_and_tolerates_a_missing_crd() -> None:
    from helmops.policy.source import PolicyUnreadable, RestrictionSource

    now = [0.0]
    custom = _Custom()
    src = RestrictionSource(custom, ttl=5, absent_ttl=60, clock=lambda: now[0])
    assert (await src.list("team"))[0]["defaultServiceAccount"] == "sa"
    await src.list("team")
    assert custom.calls == 1
    now[0] = 6
    await src.list("team")
    assert custom.calls == 2
    custom.status = 404  # the CRD was removed
    now[0] = 12
    assert await src.list("team") == [] and await src.list("other") == []
    assert custom.calls == 3  # "absent" is remembered for absent_ttl
    custom.status = 403
    now[0] = 80
    with pytest.raises(PolicyUnreadable) as err:
        await src.list("team")
    assert "HTTP 403" in str(err.value)
