"""Semantic validation, chart references, release names and namespaces, durations, selectors."""

from __future__ import annotations

from typing import Any

import pytest

from helmops.api import (
    POLLING_INTERVAL,
    ChartRef,
    HelmApp,
    HelmAppSpec,
    HelmOptions,
    LabelSelector,
    Problem,
    annotation_problems,
    chart_ref,
    derive_release_name,
    effective_chart_source,
    parse_duration,
    parse_duration_ns,
    polling_interval,
    polling_interval_seconds,
    release_name,
    release_namespace,
    target_name,
    validate,
    validate_app,
)
from helmops.api.problems import errors, warnings


def spec(**fields: Any) -> HelmAppSpec:
    return HelmAppSpec.model_validate(fields)


HTTP = {"repo": "https://charts.example.com/", "chart": "hello"}


# -- chart references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helm", "expected"),
    [
        (
            {"repo": "https://charts.example.com/stable", "chart": "nginx", "version": "1.2.3"},
            ChartRef("http", "https://charts.example.com/stable", "nginx", "1.2.3", "nginx"),
        ),
        (
            {"repo": " http://charts.internal:8080/ ", "chart": "hello", "version": " ^1.0 "},
            ChartRef("http", "http://charts.internal:8080/", "hello", "^1.0", "hello"),
        ),
        (
            {"chart": "oci://registry.example.com:5000/charts/hello", "version": "0.1.0"},
            ChartRef(
                "oci",
                "oci://registry.example.com:5000/charts",
                "hello",
                "0.1.0",
                "oci://registry.example.com:5000/charts/hello",
            ),
        ),
        (
            {"repo": "oci://registry.example.com:5000/charts/hello", "version": "0.1.0", "chart": ""},
            ChartRef(
                "oci",
                "oci://registry.example.com:5000/charts",
                "hello",
                "0.1.0",
                "oci://registry.example.com:5000/charts/hello",
            ),
        ),
        (
            {"repo": "oci://ghcr.io/hello/"},
            ChartRef("oci", "oci://ghcr.io", "hello", "", "oci://ghcr.io/hello"),
        ),
        (
            {"chart": "https://dl.example.com/hello-0.1.0.tgz", "repo": "", "version": ""},
            ChartRef(
                "tarball",
                "",
                "https://dl.example.com/hello-0.1.0.tgz",
                "",
                "https://dl.example.com/hello-0.1.0.tgz",
            ),
        ),
        (
            {"chart": "https://dl.example.com/download?chart=hello"},
            ChartRef(
                "tarball",
                "",
                "https://dl.example.com/download?chart=hello",
                "",
                "https://dl.example.com/download?chart=hello",
            ),
        ),
    ],
)
def test_chart_ref_forms(helm: dict[str, str], expected: ChartRef) -> None:
    assert chart_ref(HelmOptions.model_validate(helm)) == expected


def test_oci_in_chart_and_in_repo_normalise_to_the_same_ref() -> None:
    in_chart = chart_ref(HelmOptions(chart="oci://r.example.com/a/b/app", version="1.0.0"))
    in_repo = chart_ref(HelmOptions(repo="oci://r.example.com/a/b/app", version="1.0.0"))
    assert in_chart == in_repo


@pytest.mark.parametrize(
    ("helm", "words"),
    [
        ({}, "no chart"),
        ({"chart": "", "repo": ""}, "no chart"),
        ({"repo": "https://charts.example.com/"}, "no chart"),
        ({"chart": "oci://a.example.com/x", "repo": "oci://a.example.com/x"}, "both"),
        ({"chart": "oci://a.example.com/x", "repo": "https://charts.example.com/"}, "repo must be empty"),
        ({"repo": "oci://a.example.com/charts", "chart": "x"}, "chart must be empty"),
        ({"repo": "oci://a.example.com"}, "oci://host/path/chart"),
        ({"chart": "oci://"}, "oci://host/path/chart"),
        ({"chart": "https://dl.example.com/x-1.0.0.tgz", "version": "1.0.0"}, "leave version empty"),
        ({"chart": "https://dl.example.com/x-1.0.0.tgz", "repo": "https://charts.example.com/"}, "leave repo"),
        ({"chart": "x-1.0.0.tgz"}, "not an http(s) URL"),
        ({"chart": "hello"}, "needs repo"),
        ({"chart": "hello", "repo": "charts.example.com"}, "http(s)://"),
        ({"chart": "hello", "repo": "ftp://charts.example.com/"}, "http(s)://"),
        ({"chart": "stable/hello", "repo": "https://charts.example.com/"}, "chart name"),
    ],
)
def test_chart_ref_rejects(helm: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        chart_ref(HelmOptions.model_validate(helm))
    assert words in str(caught.value)


# -- validate() -------------------------------------------------------------------------------------


def paths(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.path, p.severity) for p in problems]


def test_a_good_spec_has_no_problems() -> None:
    assert validate(spec(helm=HTTP, targets=[{"clusterSelector": {}}])) == []
    assert validate(spec(helm={"repo": "oci://r.example.com/charts/x"}, targets=[{"clusterName": "a"}])) == []


def test_missing_helm_and_empty_chart_are_errors() -> None:
    assert paths(validate(spec())) == [("spec.helm", "error")]
    assert paths(validate(spec(helm={}))) == [("spec.helm.chart", "error")]
    assert paths(validate(spec(helm={"repo": "oci://x.example.com"}))) == [("spec.helm.repo", "error")]


def test_conflicting_chart_fields_are_errors() -> None:
    problems = validate(spec(helm={"chart": "https://x.example.com/c-1.0.0.tgz", "version": "1.0.0"}))
    assert paths(problems) == [("spec.helm.chart", "error")]
    assert "version" in problems[0].message


def test_target_with_no_selector_matches_nothing_warning() -> None:
    problems = validate(spec(helm=HTTP, targets=[{"name": "lost"}, {"doNotDeploy": True}]))
    assert paths(problems) == [("spec.targets[0]", "warning")]
    assert "'lost'" in problems[0].message and "matches no cluster" in problems[0].message


def test_unusable_selectors_are_errors() -> None:
    problems = validate(
        spec(
            helm=HTTP,
            targets=[
                {"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}},
                {"clusterGroupSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
                {"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
            ],
        )
    )
    assert paths(problems) == [
        ("spec.targets[0].clusterSelector.matchExpressions[0]", "error"),
        ("spec.targets[1].clusterGroupSelector.matchExpressions[0]", "error"),
        ("spec.targets[2].clusterSelector.matchExpressions[0]", "error"),
    ]
    assert "unknown operator 'Equals'" in problems[0].message


def test_target_chart_override_is_checked_with_the_spec_values() -> None:
    # The target's own chart is a tarball URL, but the spec's repo/version still apply: conflict.
    problems = validate(
        spec(
            helm={**HTTP, "version": "1.0.0"},
            targets=[{"clusterName": "a", "helm": {"chart": "https://x.example.com/c-2.0.0.tgz"}}],
        )
    )
    assert paths(problems) == [("spec.targets[0].helm.chart", "error")]
    # Overriding only the version is fine.
    assert validate(spec(helm=HTTP, targets=[{"clusterName": "a", "helm": {"version": "2.0.0"}}])) == []


def test_effective_chart_source_merges_like_fleet() -> None:
    root = spec(helm={**HTTP, "version": "1.0.0"}, targets=[{"helm": {"version": "2.0.0"}}, {}])
    merged = effective_chart_source(root, root.targets[0])
    assert (merged.repo, merged.chart, merged.version) == (HTTP["repo"], "hello", "2.0.0")
    merged = effective_chart_source(root, None)
    assert merged.version == "1.0.0"


def test_ignored_fields_warn() -> None:
    problems = validate(
        spec(
            helm={**HTTP, "valuesFiles": ["a.yaml"]},
            kustomize={"dir": "x"},
            yaml={"overlays": ["o"]},
            resources=[{"name": "f"}],
            contentsId="c",
            targetRestrictions=[{"clusterName": "a"}],
            helmAppOptions={"helmAppSecretName": "s"},
            rolloutStrategy={"partitions": [{"name": "p", "clusterName": "a"}], "maxUnavailable": 1},
            dependsOn=[{"name": "other"}],
            targets=[{"clusterName": "a", "kustomize": {"dir": "y"}, "helm": {"valuesFiles": ["b"]}}],
        )
    )
    assert errors(problems) == []
    assert sorted(p.path for p in warnings(problems)) == sorted(
        [
            "spec.helm.valuesFiles",
            "spec.kustomize",
            "spec.yaml",
            "spec.resources",
            "spec.contentsId",
            "spec.helmAppOptions",
            "spec.targets[0].kustomize",
            "spec.targets[0].helm.valuesFiles",
        ]
    )
    assert all(p.message.startswith("ignored: ") for p in problems)


def test_empty_ignored_fields_do_not_warn() -> None:
    assert (
        validate(
            spec(
                helm={**HTTP, "valuesFiles": []},
                kustomize={},
                yaml={"overlays": []},
                resources=[],
                contentsId="",
                targetRestrictions=[],
                dependsOn=None,
                rolloutStrategy={"maxUnavailable": "10%"},
            )
        )
        == []
    )


def test_helm_option_problems() -> None:
    problems = validate(
        spec(helm={**HTTP, "waitForJobs": True, "maxHistory": -1, "valuesFrom": [{}, {"secretKeyRef": {"key": "k"}}]})
    )
    assert paths(problems) == [
        ("spec.helm.maxHistory", "error"),
        ("spec.helm.valuesFrom[1].secretKeyRef.name", "error"),
        ("spec.helm.waitForJobs", "warning"),
        ("spec.helm.valuesFrom[0]", "warning"),
    ]


def test_duplicate_target_names_warn() -> None:
    problems = validate(spec(helm=HTTP, targets=[{"name": "a", "clusterName": "x"}, {"name": "a", "clusterName": "y"}]))
    assert paths(problems) == [("spec.targets[1].name", "warning")]


def test_errors_come_before_warnings() -> None:
    problems = validate(spec(helm={}, kustomize={"dir": "x"}))
    assert [p.severity for p in problems] == ["error", "warning"]
    assert str(problems[0]).startswith("spec.helm.chart: ")


def test_problem_is_frozen() -> None:
    problem = Problem("spec.x", "bad")
    assert problem.severity == "error"
    with pytest.raises(AttributeError):
        problem.path = "y"  # type: ignore[misc]


# -- release name and namespace ---------------------------------------------------------------------

STR50 = "1234567890" * 5
STR53 = STR50 + "123"
STR63 = STR50 + "1234567890" + "123"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Unchanged when already valid.
        ("hello", "hello"),
        ("my-app-1", "my-app-1"),
        (STR53, STR53),
        # Too long: cut, then "-" and 5 hex digits of the hash.
        (STR53 + "a", "12345678901234567890123456789012345678901234567-fdba4"),
        (STR63 + "a", "12345678901234567890123456789012345678901234567-eb12d"),
        # A cut that ends in "-" does not double the dash.
        (STR53[0:46] + "-1234567", "1234567890123456789012345678901234567890123456-d0bce"),
        # Invalid characters or upper case: hash of the original appended, then cleaned.
        ("long-name-test-shortpath-with@char", "long-name-test-shortpath-with-char-031bab5e"),
        ("long-name-test-shortpath-with+char", "long-name-test-shortpath-with-char-21c88393"),
        ("long-name-test-0.App_ ", "long-name-test-0-app-5bf6b3fb"),
        ("long-name-test--App_-_12.factor", "long-name-test-app-12-factor-0efbac37"),
        ("bundle.name.example.com", "bundle-name-example-com-645ef821"),
    ],
)
def test_derive_release_name_like_fleet(name: str, expected: str) -> None:
    # Expected values are Fleet's (its names.HelmReleaseName), so adopted releases keep their names.
    assert derive_release_name(name) == expected
    assert len(derive_release_name(name)) <= 53


def test_derive_release_name_falls_back_to_a_hash() -> None:
    assert derive_release_name("___") == "948a13f1"  # only the hash survives the clean-up
    result = derive_release_name("")
    assert len(result) == 24 and all(c in "0123456789abcdef" for c in result)


def test_release_name_prefers_explicit_names() -> None:
    s = spec(helm={**HTTP, "releaseName": "explicit"}, targets=[{"helm": {"releaseName": "per-target"}}, {}])
    assert release_name("My.App", s) == "explicit"
    assert release_name("My.App", s, s.targets[0]) == "per-target"
    assert release_name("My.App", s, s.targets[1]) == "explicit"
    assert release_name("web", spec(helm=HTTP)) == "web"


def test_release_namespace() -> None:
    assert release_namespace(spec()) == "default"
    assert release_namespace(spec(defaultNamespace="apps")) == "apps"
    assert release_namespace(spec(defaultNamespace="apps", namespace="forced")) == "forced"
    s = spec(defaultNamespace="apps", targets=[{"defaultNamespace": "t"}, {"namespace": "tn"}, {}])
    assert release_namespace(s, s.targets[0]) == "t"
    assert release_namespace(s, s.targets[1]) == "tn"
    assert release_namespace(s, s.targets[2]) == "apps"


def test_target_name_defaults_by_position() -> None:
    s = spec(targets=[{}, {"name": "named"}, {}])
    assert [target_name(t, i) for i, t in enumerate(s.targets)] == ["target000", "named", "target002"]


# -- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("1.s", 1.0),
        (".5s", 0.5),
        ("300ms", 0.3),
        ("1h30m", 5400.0),
        ("1h1m1s", 3661.0),
        ("2h45m30.5s", 9930.5),
        ("-1.5h", -5400.0),
        ("+5m", 300.0),
        ("1000us", 0.001),
        ("1000\u00b5s", 0.001),
        ("1000\u03bcs", 0.001),
        ("1ns", 1e-9),
        ("1m1m", 120.0),
        ("2562047h", 2562047 * 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_limits_are_go_int64_nanoseconds() -> None:
    assert parse_duration_ns("2562047h47m16.854775807s") == 2**63 - 1
    assert parse_duration_ns("-2562047h47m16.854775808s") == -(2**63)
    assert parse_duration_ns("0.5ns") == 0
    for text in ("2562047h47m16.854775808s", "2562048h", "9223372036854775808ns"):
        with pytest.raises(ValueError, match="out of range"):
            parse_duration_ns(text)


@pytest.mark.parametrize("text", ["", "-", "1", "s", ".s", "1d", "1w", "1 s", " 1s", "1s ", "1.5.5s", "1sm", "h1"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_polling_interval_from_spec_or_annotation() -> None:
    def app(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> HelmApp:
        return HelmApp.model_validate({"metadata": {"annotations": annotations or {}}, "spec": spec})

    assert polling_interval_seconds(app({})) == 0
    assert polling_interval_seconds(app({"pollingInterval": "0"})) == 0
    assert polling_interval_seconds(app({"pollingInterval": "5m"})) == 300
    assert polling_interval_seconds(app({}, {POLLING_INTERVAL: "1h"})) == 3600
    # The spec field wins; an invalid annotation means no polling.
    assert polling_interval(app({"pollingInterval": "5m"}, {POLLING_INTERVAL: "1h"})) == "5m"
    assert polling_interval_seconds(app({}, {POLLING_INTERVAL: "1d"})) == 0


def test_annotation_problems_and_validate_app() -> None:
    problems = annotation_problems({POLLING_INTERVAL: "1d", "helmops.cattle.io/typo": "x", "other.example.com/x": "y"})
    assert [(p.path, p.severity) for p in problems] == [
        ("metadata.annotations[helmops.cattle.io/polling-interval]", "error"),
        ("metadata.annotations[helmops.cattle.io/typo]", "warning"),
    ]
    app = HelmApp.model_validate({"metadata": {"annotations": {"helmops.cattle.io/typo": "x"}}, "spec": {"helm": {}}})
    assert [(p.path, p.severity) for p in validate_app(app)] == [
        ("spec.helm.chart", "error"),
        ("metadata.annotations[helmops.cattle.io/typo]", "warning"),
    ]


# -- label selectors --------------------------------------------------------------------------------


def selector(**fields: Any) -> LabelSelector:
    return LabelSelector.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "labels", "expected"),
    [
        ({}, {}, True),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1"}}, {}, False),
        ({"matchLabels": {"a": ""}}, {}, False),
        ({"matchLabels": {"a": ""}}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [
                    {"key": "region", "operator": "In", "values": ["eu"]},
                    {"key": "frozen", "operator": "DoesNotExist"},
                ],
            },
            {"env": "prod", "region": "eu"},
            True,
        ),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "frozen", "operator": "DoesNotExist"}]},
            {"env": "prod", "frozen": "yes"},
            False,
        ),
    ],
)
def test_selector_matches(fields: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selector(**fields).matches(labels) is expected


@pytest.mark.parametrize(
    "expression",
    [
        {"key": "a", "operator": "Equals", "values": ["1"]},
        {"key": "a", "operator": "in", "values": ["1"]},
        {"key": "a", "operator": "In"},
        {"key": "a", "operator": "NotIn", "values": []},
        {"key": "a", "operator": "Exists", "values": ["1"]},
        {"key": "a", "operator": "DoesNotExist", "values": ["1"]},
    ],
)
def test_malformed_selector_raises_instead_of_guessing(expression: dict[str, Any]) -> None:
    s = selector(matchLabels={"never": "matches"}, matchExpressions=[expression])
    assert s.problems()
    with pytest.raises(ValueError, match="invalid label selector"):
        s.matches({})
