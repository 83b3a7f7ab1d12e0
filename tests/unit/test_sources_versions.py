"""Helm (Masterminds v3) constraint semantics: tables of (constraint, version) -> verdict and picks."""

from __future__ import annotations

import pytest

from helmops.sources.errors import ConstraintError
from helmops.sources.versions import is_exact, nearest, parse_constraint, parse_version, resolve

# (constraint, version, matches?)
MATCHES: list[tuple[str, str, bool]] = [
    # empty / star: every stable version, no prereleases
    ("", "1.2.3", True),
    ("", "1.2.3-rc.1", False),
    ("*", "0.0.1", True),
    ("*", "2.0.0-rc.1", False),
    (">=0.0.0", "5.0.0", True),
    (">=0.0.0", "5.0.0-alpha", False),
    ("x", "3.1.4", True),
    ("X", "3.1.4", True),
    # exact / =
    ("1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False),
    ("=1.2.3", "1.2.3", True),
    ("v1.2.3", "1.2.3", True),
    ("1.4.0", "1.4.0+build.7", True),
    ("1.2.3-rc.1", "1.2.3-rc.1", True),
    ("1.2.3-rc.1", "1.2.3", False),
    # bare partial versions are wildcards
    ("2", "2.9.9", True),
    ("2", "3.0.0", False),
    ("1.2", "1.2.9", True),
    ("1.2", "1.3.0", False),
    ("3", "3.0.0", True),
    # caret
    ("^1.2", "1.2.0", True),
    ("^1.2", "1.9.9", True),
    ("^1.2", "2.0.0", False),
    ("^1.2", "1.1.9", False),
    ("^1.2.0", "1.4.0", True),
    ("^1.2.3", "1.2.2", False),
    ("^0.2.3", "0.2.3", True),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.2.3", "1.2.5", False),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.9", True),
    ("^0.0", "0.1.0", False),
    ("^0", "0.9.0", True),
    ("^0", "1.0.0", False),
    # a wildcard major: helm 3.17's own (quirky) answers
    ("^*", "7.0.0", False),
    ("^*", "0.0.0", True),
    (">*", "0.0.0", False),
    (">*", "0.0.1", True),
    ("<=*", "0.0.1", True),
    ("<=*", "0.1.0", False),
    ("!=*", "0.0.0", False),
    ("!=*", "1.0.0", True),
    ("<*", "0.0.0", False),
    ("~0.0.0", "7.0.0", True),
    ("^0.0.0", "0.0.1", False),
    ("1.x.3", "1.0.0", True),
    # tilde and ~>
    ("~1.2.0", "1.2.9", True),
    ("~1.2.0", "1.3.0", False),
    ("~1.2", "1.2.0", True),
    ("~1.2.3", "1.2.2", False),
    ("~>1.2", "1.2.5", True),
    ("~>1.2", "1.3.0", False),
    ("~1", "1.9.0", True),
    ("~1", "2.0.0", False),
    # x / X / * wildcards
    ("1.2.x", "1.2.7", True),
    ("1.2.X", "1.3.0", False),
    ("1.2.*", "1.2.0", True),
    ("1.x", "1.9.9", True),
    ("1.x", "2.0.0", False),
    ("1.*.*", "1.0.1", True),
    # comparisons, =>/=< aliases, blanks after the operator
    (">1.2.3", "1.2.3", False),
    (">1.2.3", "1.2.4", True),
    (">1.2.x", "1.2.9", False),
    (">1.2.x", "1.3.0", True),
    (">1", "1.9.9", False),
    (">1", "2.0.0", True),
    ("<1.2.3", "1.2.2", True),
    ("<1.2.3", "1.2.3", False),
    ("<=1.x", "1.99.0", True),
    ("<=1.x", "2.0.0", False),
    ("<=1.2.3", "1.2.3", True),
    ("=>1.2", "1.2.0", True),
    ("=>1.2", "1.1.0", False),
    ("=<1.2.3", "1.2.3", True),
    ("=<1.2.3", "1.2.4", False),
    (">= 1.2, < 1.3", "1.2.5", True),
    (">= 1.2, < 1.3", "1.3.0", False),
    # != with and without wildcards
    ("!=1.2.x", "1.2.5", False),
    ("!=1.2.x", "1.3.0", True),
    ("!=1.2.3", "1.2.4", True),
    ("!=1.2.3", "1.2.3", False),
    ("!=1.2.3", "1.2.4-rc.1", True),  # an exact != does not exclude prereleases
    ("!=1.2.x", "1.3.0-rc.1", False),
    # AND with space or comma, OR with ||
    (">=1 <2", "1.5.0", True),
    (">=1 <2", "2.0.0", False),
    (">=1, <2", "1.0.0", True),
    (">=1,<2", "0.9.0", False),
    ("^1.2 || ^3", "3.4.0", True),
    ("^1.2 || ^3", "2.0.0", False),
    ("<1 || >=3.0.0", "0.5.0", True),
    # hyphen ranges (inclusive; partial upper bound is a wildcard)
    ("1.2.0 - 1.3.0", "1.3.0", True),
    ("1.2.0 - 1.3.0", "1.3.1", False),
    ("1.2.0 - 1.3.0", "1.1.9", False),
    ("1 - 2", "2.9.9", True),
    ("1 - 2", "3.0.0", False),
    # prereleases: only when every term of the AND group has one
    ("^1.2.3-0", "1.2.3-rc.1", True),
    ("^1.2.3-0", "1.3.0-beta.2", True),
    ("^1.2.3-0", "2.0.0-rc.1", False),
    (">1.2.0-0", "2.0.0-rc.1", True),
    (">=1.0.0-0 <1.4.0", "1.3.0-rc.1", False),
    (">=1.0.0-0 <1.4.0", "1.3.0", True),
    (">=1.0.0-0 <1.4.0-0", "1.3.0-rc.1", True),
    (">=1.2.3-alpha", "1.2.3-beta", True),
    (">=1.2.3-beta", "1.2.3-alpha", False),
    ("<1.0.0-rc.10", "1.0.0-rc.9", True),
    ("~1.2.0-0", "1.2.5-rc.1", True),
    ("^1.0.0-0 || ^2", "2.1.0-rc.1", False),
    ("1.x || >=2.0.0-0", "2.1.0-rc.1", True),
    # leading v in the constraint and in the version
    ("v1.2.x", "1.2.9", True),
    ("^v1.2", "v1.4.0", True),
    (">=v2.0.0", "v2.2.0", True),
    # lenient index versions
    ("2.2.0", "v2.2.0", True),
    ("3", "3.0", True),
    ("^1.2", "1.5", True),
    ("*", "latest", False),
]


@pytest.mark.parametrize(("constraint", "version", "expected"), MATCHES)
def test_matches(constraint: str, version: str, expected: bool) -> None:
    assert parse_constraint(constraint).matches(version) is expected


def test_table_is_big_enough() -> None:
    assert len(MATCHES) + len(PICKS) + len(OCI_PICKS) >= 80


INDEX = [
    "0.0.1", "0.0.3", "0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0", "1.2.3-rc.1", "1.2.3", "1.2.5",
    "1.3.0-beta.2", "1.3.0", "1.4.0+build.7", "2.0.0-rc.1", "2.1.0", "v2.2.0", "3.0", "not-a-version",
]

# (constraint, pick from INDEX)
PICKS: list[tuple[str, str | None]] = [
    ("", "3.0"),
    ("*", "3.0"),
    ("^1.2", "1.4.0+build.7"),
    ("^0.2.3", "0.2.9"),
    ("^0.0.3", "0.0.3"),
    ("~1.2", "1.2.5"),
    ("1.2.x", "1.2.5"),
    ("<2", "1.4.0+build.7"),
    ("2", "v2.2.0"),
    ("2.2.0", "v2.2.0"),
    ("v2.2.0", "v2.2.0"),  # exact string match first
    ("1.4.0", "1.4.0+build.7"),
    ("1.4.0+build.7", "1.4.0+build.7"),
    (">=1.0.0-0 <1.4.0", "1.3.0"),
    ("^1.2.3-0", "1.4.0+build.7"),
    (">=1.2.3-0 <1.3.0-0", "1.2.5"),
    ("1.2.3-rc.1", "1.2.3-rc.1"),
    (">2.1.0-0 <2.2.0-0", "2.1.0"),
    ("^4", None),
    ("0.1 - 0.2", "0.2.9"),
]


@pytest.mark.parametrize(("constraint", "expected"), PICKS)
def test_resolve_index(constraint: str, expected: str | None) -> None:
    assert resolve(INDEX, constraint) == expected


TAGS = ["2.0.0", "1.2.0", "1.2.5", "1.4.0_build.7", "1.3.0-rc.1", "v1.9.0", "latest", "1.5"]

OCI_PICKS: list[tuple[str, str | None]] = [
    ("", "2.0.0"),
    ("^1", "1.4.0_build.7"),  # "v1.9.0" and "1.5" are not strict semver tags
    ("1.4.0", "1.4.0_build.7"),
    ("1.4.0+build.7", "1.4.0_build.7"),
    ("1.4.0_build.7", "1.4.0_build.7"),
    ("latest", "latest"),  # an exact tag short-circuits
    ("~1.3.0-0", "1.3.0-rc.1"),
    ("1.9.0", None),
]


@pytest.mark.parametrize(("constraint", "expected"), OCI_PICKS)
def test_resolve_oci_tags(constraint: str, expected: str | None) -> None:
    assert resolve(TAGS, constraint, oci_tags=True) == expected


@pytest.mark.parametrize(
    "bad", ["foo", ">=", "1.2.3.4", "^", "1.0 ||", "|| 1.0", ">=1.0 <", "1.2.3 - ", "~=1.0", "1..2", "a.b.c"]
)
def test_improper_constraint(bad: str) -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint(bad)
    assert str(info.value) == f'improper constraint: "{bad}"'
    assert not info.value.retryable


def test_resolve_rejects_improper_constraint() -> None:
    with pytest.raises(ConstraintError):
        resolve(["1.0.0"], "foo")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", True),
        ("v1.2.3", True),
        ("1.2.3-rc.1+b.2", True),
        ("1.2", False),
        ("^1.2.3", False),
        ("*", False),
        ("", False),
        ("01.2.3", False),
        ("vv1.2.3", False),
    ],
)
def test_is_exact(text: str, expected: bool) -> None:
    assert is_exact(text) is expected


def test_parse_version_strict_and_lenient() -> None:
    assert parse_version("v1.2") is not None
    assert parse_version("v1.2.3", strict=True) is None
    assert parse_version("1.2", strict=True) is None
    v = parse_version("1.0.0_b.1", strict=True)
    assert v is not None and v.build == "b.1"


def test_nearest_ranks_by_distance_then_sorts_descending() -> None:
    assert nearest(INDEX, "^1.9") == ["1.4.0+build.7", "1.3.0", "1.2.0"]
    assert nearest(INDEX, "foo", n=2) == ["3.0", "v2.2.0"]
    assert nearest([], "^1") == []
